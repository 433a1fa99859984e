"""Everything that touches files and the network: URLs, object stores, transfers, the file cache, generated media."""

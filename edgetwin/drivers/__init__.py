"""One module per device family: reads and writes through a transport."""

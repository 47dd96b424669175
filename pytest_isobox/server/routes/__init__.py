"""One module per group of Docker's endpoints; each has a `router` the app merges."""

"""The model library: checkpoints, ControlNets and IP-Adapters registered by Hub id or path,
their hashes, and which teams may use them."""

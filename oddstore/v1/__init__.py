"""Generated protobuf and gRPC code for oddstore.v1 (make proto); nothing here is edited by hand."""

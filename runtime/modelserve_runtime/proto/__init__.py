"""The Open Inference Protocol v2 gRPC proto and, once the package is built or installed,
its generated modules (`grpc_predict_v2_pb2`, `grpc_predict_v2_pb2_grpc`; setup.py)."""

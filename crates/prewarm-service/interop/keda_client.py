"""A KEDA-side client of prewarm's external scaler, from stubs grpcio-tools generates.

Usage: keda_client.py PROTO_DIR ADDRESS FLEET [CA_PEM]

Generates the Python stubs from PROTO_DIR/externalscaler.proto into a temporary directory, calls
every method the way KEDA does (the fleet in the trigger metadata), and prints one JSON object:
each call's answer, or its gRPC status code and message.
"""

import json
import sys
import tempfile

import grpc
from grpc_tools import protoc


def generate(proto_dir, out_dir):
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"{proto_dir}/externalscaler.proto",
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with {code}")
    sys.path.insert(0, out_dir)


def call(fn):
    try:
        return {"ok": fn()}
    except grpc.RpcError as e:
        return {"code": e.code().name, "message": e.details()}


def main():
    proto_dir, address, fleet = sys.argv[1:4]
    ca = sys.argv[4] if len(sys.argv) > 4 else None
    out_dir = tempfile.mkdtemp()
    generate(proto_dir, out_dir)
    import externalscaler_pb2 as pb
    import externalscaler_pb2_grpc as rpc

    if ca:
        with open(ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(address, creds)
    else:
        channel = grpc.insecure_channel(address)
    stub = rpc.ExternalScalerStub(channel)

    def ref(metadata):
        return pb.ScaledObjectRef(name="vllm", namespace="llm", scalerMetadata=metadata)

    ours = ref({"fleet": fleet})
    result = {}
    result["is_active"] = call(lambda: stub.IsActive(ours, timeout=10).result)

    def spec():
        s = stub.GetMetricSpec(ours, timeout=10).metricSpecs[0]
        return {"name": s.metricName, "target": s.targetSize, "target_float": s.targetSizeFloat}

    result["metric_spec"] = call(spec)

    def metrics():
        name = result["metric_spec"].get("ok", {}).get("name", "")
        v = stub.GetMetrics(
            pb.GetMetricsRequest(scaledObjectRef=ours, metricName=name), timeout=10
        ).metricValues[0]
        return {"name": v.metricName, "value": v.metricValue, "value_float": v.metricValueFloat}

    result["metrics"] = call(metrics)

    def stream_first():
        stream = stub.StreamIsActive(ours, timeout=10)
        first = next(stream).result
        stream.cancel()
        return first

    result["stream_is_active"] = call(stream_first)
    result["stream_metric_spec"] = call(lambda: next(stub.StreamMetricSpec(ours, timeout=10)))
    result["no_fleet_key"] = call(lambda: stub.IsActive(ref({"other": "x"}), timeout=10).result)
    result["unknown_fleet"] = call(
        lambda: stub.GetMetrics(
            pb.GetMetricsRequest(scaledObjectRef=ref({"fleet": "no-such-fleet"})), timeout=10
        ).metricValues[0].metricValue
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

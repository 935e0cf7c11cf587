"""A polyglot client: stubs generated from our protos by grpc_tools, calling a running
service. Prints one JSON line with what it saw. Usage: python_client.py GEN_DIR ADDRESS"""
import json
import os
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402

# Our generated grpc/health/v1 lives beside the installed `grpc` package, which would
# shadow it; extending the package path lets `grpc.health.v1` resolve to the generated code.
grpc.__path__.append(os.path.join(sys.argv[1], "grpc"))

from grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402  (ours, generated)
from mlmesh.registry.v1 import registry_service_pb2, registry_service_pb2_grpc  # noqa: E402

address = sys.argv[2]
with grpc.insecure_channel(address) as channel:
    health = health_pb2_grpc.HealthStub(channel)
    overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    registry_status = health.Check(
        health_pb2.HealthCheckRequest(service="mlmesh.registry.v1.RegistryService"), timeout=5
    )
    registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
    registry.CreateModel(registry_service_pb2.CreateModelRequest(name="from_python", tags={"lang": "python"}), timeout=5)
    listed = registry.ListModels(registry_service_pb2.ListModelsRequest(), timeout=5)
    try:
        registry.GetModel(registry_service_pb2.GetModelRequest(name="absent"), timeout=5)
        missing = "OK"
    except grpc.RpcError as err:
        missing = err.code().name
    print(
        json.dumps(
            {
                "overall": health_pb2.HealthCheckResponse.ServingStatus.Name(overall.status),
                "registry": health_pb2.HealthCheckResponse.ServingStatus.Name(registry_status.status),
                "models": [m.name for m in listed.registered_models],
                "missing": missing,
            }
        )
    )

// The version every service reports (ServerMetadata, OTel resource, `mlmesh --version`).
export const MLMESH_VERSION = "0.1.0";

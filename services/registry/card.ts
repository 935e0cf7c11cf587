// Renders a version's model card as CommonMark: the sections people wrote (empty ones say
// "Not provided", so a gap is visible rather than hidden) with the facts the registry knows
// filled in — details, signature, feature binding, metrics and lineage.

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { DatasetRole, ElementType, Stage, type ModelVersion, type TensorSpec } from "../../gen/mlmesh/registry/v1/registry_resources_pb.js";

const STAGE_TEXT: Record<number, string> = { [Stage.NONE]: "None", [Stage.STAGING]: "Staging", [Stage.PRODUCTION]: "Production", [Stage.ARCHIVED]: "Archived" };

/** Escapes text for a Markdown table cell. */
function cell(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

function time(t: Timestamp | undefined): string {
  return t ? timestampDate(t).toISOString() : "";
}

function shape(s: TensorSpec): string {
  if (!s.shape) return "unknown";
  return `[${s.shape.dims.map((d) => (d.value.case === "size" ? String(d.value.value) : d.value.case === "symbol" ? d.value.value : "?")).join(", ")}]`;
}

function section(title: string, body: string): string {
  return `## ${title}\n\n${body.trim() ? body.trim() : "_Not provided._"}\n`;
}

export function renderModelCard(v: ModelVersion): string {
  const out: string[] = [];
  const card = v.card;
  const l = v.lineage;
  out.push(`# ${v.modelName} v${v.version}\n`);
  if (v.description.trim()) out.push(`${v.description.trim()}\n`);
  out.push(
    "## Model details\n",
    "| | |",
    "| --- | --- |",
    `| Version | ${v.version} |`,
    `| Stage | ${STAGE_TEXT[v.stage] ?? "?"} |`,
    `| Aliases | ${v.aliases.length ? v.aliases.map(cell).join(", ") : "none"} |`,
    `| Artifact sha256 | \`${v.artifact?.sha256 ?? ""}\` |`,
    `| Size | ${v.artifact?.sizeBytes ?? 0n} bytes |`,
    `| Producer | ${cell(`${v.artifact?.producerName ?? ""} ${v.artifact?.producerVersion ?? ""}`.trim() || "unknown")} |`,
    `| Registered | ${time(v.createTime)} by ${cell(v.createdBy)} |`,
    "",
    "### Signature\n",
    "| | name | type | shape |",
    "| --- | --- | --- | --- |",
    ...(v.signature?.inputs ?? []).map((s) => `| input | ${cell(s.name)} | ${cell(s.typeDescription || ElementType[s.elementType] || "")} | ${shape(s)} |`),
    ...(v.signature?.outputs ?? []).map((s) => `| output | ${cell(s.name)} | ${cell(s.typeDescription || ElementType[s.elementType] || "")} | ${shape(s)} |`),
    "",
  );
  if (v.featureBinding?.inputs.length) {
    out.push("### Feature binding\n", `Entity keys: ${v.featureBinding.entityKeys.join(", ") || "none"}\n`);
    for (const b of v.featureBinding.inputs) out.push(`- \`${b.inputName}\`: ${b.features.map((f) => `\`${f}\``).join(", ")}`);
    out.push("");
  }
  out.push(section("Intended use", card?.intendedUse ?? ""));
  out.push(section("Training data", card?.trainingData ?? ""));
  out.push(section("Evaluation", card?.evaluation ?? ""));
  const metrics = Object.entries(l?.metrics ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  out.push("### Metrics\n", metrics.length ? ["| metric | value |", "| --- | --- |", ...metrics.map(([k, m]) => `| ${cell(k)} | ${m} |`)].join("\n") + "\n" : "_No metrics recorded._\n");
  out.push(section("Limitations", card?.limitations ?? ""));
  out.push(section("Ethical considerations", card?.ethicalConsiderations ?? ""));
  for (const s of card?.additionalSections ?? []) out.push(section(s.title, s.markdown));
  const params = Object.entries(l?.params ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  out.push("## Lineage\n");
  out.push(params.length ? ["| parameter | value |", "| --- | --- |", ...params.map(([k, p]) => `| ${cell(k)} | ${cell(p)} |`)].join("\n") + "\n" : "_No parameters recorded._\n");
  if (l?.datasets.length) {
    out.push("| dataset | revision | role |", "| --- | --- | --- |");
    for (const d of l.datasets) out.push(`| ${cell(d.uri)} | ${cell(d.revision.value ?? "")} | ${DatasetRole[d.role]?.toLowerCase() ?? ""} |`);
    out.push("");
  } else out.push("_No datasets recorded._\n");
  out.push(
    `- Code: ${l?.codeVersion ? `\`${l.codeVersion}\`` : "not recorded"}${l?.codeRepository ? ` (${l.codeRepository})` : ""}`,
    `- Training window: ${l?.trainingStartTime || l?.trainingEndTime ? `${time(l?.trainingStartTime) || "?"} – ${time(l?.trainingEndTime) || "?"}` : "not recorded"}`,
    `- Trained by: ${l?.creator || "not recorded"}`,
    "",
  );
  return out.join("\n");
}

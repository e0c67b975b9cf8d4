// A registered model and one of its versions (or aliases), as the reference the serving API
// takes: NAME:VERSION or NAME@ALIAS.
import { useEffect, useId } from "react";
import { get } from "../../api";
import { ErrorBox } from "../../components/ErrorBox";
import { useApi } from "../../hooks";
import { Model, ModelVersion } from "./shared";

export function ModelPicker({ model, reference, onModel, onReference, error, exclude = [] }: {
  model: string;
  reference: string;
  onModel: (model: string) => void;
  onReference: (reference: string) => void;
  error?: string;
  /** model versions ("NAME:VERSION") to mark as already served */
  exclude?: string[];
}) {
  const id = useId();
  const models = useApi((signal) => get<Model[]>("/models", undefined, signal), []);
  const versions = useApi((signal) => model
    ? get<ModelVersion[]>(`/models/${encodeURIComponent(model)}/versions`, undefined, signal)
    : Promise.resolve([] as ModelVersion[]), [model]);
  const chosen = models.data?.find((m) => m.name === model);
  const rows = versions.data && versions.data[0]?.name === model ? [...versions.data].reverse() : [];

  // Default to the newest version not served already, once the versions are known.
  useEffect(() => {
    if (!model || !rows.length) return;
    const valid = rows.some((v) => reference === `${model}:${v.version}`)
      || Object.keys(chosen?.aliases ?? {}).some((a) => reference === `${model}@${a}`);
    if (!valid) {
      const fresh = rows.find((v) => !exclude.includes(`${model}:${v.version}`)) ?? rows[0];
      onReference(`${model}:${fresh.version}`);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [model, versions.data, chosen]);

  return (
    <>
      <div className="ep-field">
        <label htmlFor={`${id}-model`}>Model</label>
        <select id={`${id}-model`} value={model} required aria-invalid={!!error && !model}
                aria-describedby={error ? `${id}-error` : undefined}
                onChange={(e) => { onModel(e.target.value); onReference(""); }}>
          <option value="">{models.loading && !models.data ? "Loading models…" : "Choose a registered model"}</option>
          {(models.data ?? []).map((m) => <option key={m.name} value={m.name}>{m.name}</option>)}
          {model && models.data && !chosen && <option value={model}>{model}</option>}
        </select>
      </div>
      <div className="ep-field">
        <label htmlFor={`${id}-version`}>Version</label>
        <select id={`${id}-version`} value={reference} disabled={!model || !rows.length}
                onChange={(e) => onReference(e.target.value)}>
          {!rows.length && <option value="">{model && versions.loading ? "Loading versions…" : "—"}</option>}
          {rows.map((v) => (
            <option key={v.version} value={`${model}:${v.version}`}>
              {`Version ${v.version}`}
              {v.approval && v.approval !== "pending" ? ` · ${v.approval}` : ""}
              {v.aliases.length ? ` · @${v.aliases.join(", @")}` : ""}
              {exclude.includes(`${model}:${v.version}`) ? " · serving" : ""}
            </option>
          ))}
          {Object.entries(chosen?.aliases ?? {}).map(([alias, version]) => (
            <option key={`@${alias}`} value={`${model}@${alias}`}>{`Alias @${alias} (version ${version} now)`}</option>
          ))}
        </select>
      </div>
      {error && <div id={`${id}-error`} className="ep-invalid">{error}</div>}
      <ErrorBox error={models.error ?? versions.error} />
      {models.data && models.data.length === 0 && (
        <p className="muted">No registered models yet. Log one with MLflow
          (<code>mlflow.sklearn.log_model(..., registered_model_name="churn")</code>), train one with{" "}
          <code>cumulo train</code>, or <code>cumulo models import hf://ORG/NAME</code>.</p>
      )}
    </>
  );
}

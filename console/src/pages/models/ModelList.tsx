// The model registry: every model with its latest version and aliases.
import { useState } from "react";
import { Link } from "react-router-dom";
import { get } from "../../api";
import { Empty, ErrorBox, Loading } from "../../components/ErrorBox";
import { when } from "../../format";
import { useApi } from "../../hooks";
import { Table } from "../jobs/shared";
import { Model, modelPath } from "./types";

export default function ModelList() {
  const models = useApi((signal) => get<Model[]>("/models", undefined, signal), [], 10000);
  const [text, setText] = useState("");
  const needle = text.trim().toLowerCase();
  const shown = (models.data ?? []).filter((m) => !needle || m.name.toLowerCase().includes(needle)
    || m.description.toLowerCase().includes(needle) || Object.keys(m.aliases).some((a) => a.includes(needle)));
  return (
    <>
      <ErrorBox error={models.error} />
      {!models.data && models.loading && <Loading what="Loading models (MLflow starts on first use, a few seconds)" />}
      {models.data && models.data.length === 0 && (
        <Empty>No models registered yet. Train one with{" "}
          <code>cumulo train --table shop.customers --target churned --name churn</code>, import one with{" "}
          <code>cumulo models import ./model.pkl --name churn</code>, or log one from MLflow with{" "}
          <code>registered_model_name="churn"</code>.</Empty>
      )}
      {models.data && models.data.length > 0 && (
        <>
          <div className="ops-filters row">
            <label>Search{" "}
              <input type="search" value={text} placeholder="name, description, alias" onChange={(e) => setText(e.target.value)} />
            </label>
            <span className="muted">{models.data.length} model{models.data.length === 1 ? "" : "s"}</span>
          </div>
          <Table label="Models" head={["Model", "Latest version", "Aliases", "Description", "Updated"]}
                 empty={shown.length === 0 ? "No model matches" : undefined}>
            {shown.map((m) => (
              <tr key={m.name}>
                <td><Link to={modelPath(m.name)}>{m.name}</Link></td>
                <td className="num">{m.latest_version ?? "—"}</td>
                <td>{Object.entries(m.aliases).sort().map(([alias, v]) => (
                  <span key={alias} className="ops-chip">{alias} → v{v}</span>))}</td>
                <td className="muted">{m.description || "—"}</td>
                <td>{when(m.updated_at)}</td>
              </tr>
            ))}
          </Table>
        </>
      )}
    </>
  );
}

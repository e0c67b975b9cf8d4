// Notebooks: the create form. The cluster and the environment are picked from what the clusters
// and environments APIs list (when the caller may not list them: the local cluster, the server's
// Python); sizes and the idle timeout go as typed ("4G", "1h"), for the
// server to read as the CLI's options are read.
import { useState } from "react";
import { get, post } from "../api";
import { ErrorBox } from "../components/ErrorBox";
import { bytes } from "../format";
import { useAction, useApi } from "../hooks";
import { NAME_HINT, NAME_RULE, Notebook } from "./NotebooksTypes";

interface Cluster { name: string; type: string; max_cpus: number; max_memory: number; max_gpus: number }
interface Environment { digest: string; names: string[]; state: string }

const SIZE = /^\d+(\.\d+)?\s*([KMGT]i?B?|B)?$/i;
const DURATION = /^(\d+(\.\d+)?\s*(s|m|min|h|d)?)+$/i;

export default function CreateNotebook({ onCreated }: { onCreated: (made: Notebook) => void }) {
  const [name, setName] = useState("");
  const [cluster, setCluster] = useState("local");
  const [cpus, setCpus] = useState("1");
  const [memory, setMemory] = useState("2G");
  const [gpus, setGpus] = useState("0");
  const [environment, setEnvironment] = useState("");
  const [idle, setIdle] = useState("1h");
  const clusters = useApi((signal) => get<Cluster[]>("/clusters", undefined, signal), []);
  const envs = useApi((signal) => get<Environment[]>("/envs", undefined, signal), []);
  const create = useAction(async () => {
    const made = await post<Notebook>("/notebooks", {
      name: name.trim(), cluster, cpus: Number(cpus), memory: memory.trim() || null, gpus: Number(gpus),
      environment: environment || null, idle_timeout: idle.trim() });
    setName("");
    onCreated(made);
  });

  const chosen = clusters.data?.find((c) => c.name === cluster);
  const count = Number(cpus);
  const gpuCount = Number(gpus);
  const invalid = name.trim() !== "" && !NAME_RULE.test(name.trim()) ? `The name must be ${NAME_HINT}`
    : !(count > 0) ? "CPUs: a number above 0"
    : chosen && count > chosen.max_cpus ? `CPUs: cluster ${chosen.name} has ${chosen.max_cpus}`
    : memory.trim() !== "" && !SIZE.test(memory.trim()) ? "Memory: a size like 512M or 4G, or none for no limit"
    : !Number.isInteger(gpuCount) || gpuCount < 0 ? "GPUs: a whole number, 0 or more"
    : chosen && gpuCount > chosen.max_gpus ? `GPUs: cluster ${chosen.name} has ${chosen.max_gpus}`
    : !DURATION.test(idle.trim()) ? "Idle timeout: a duration like 30m, 1h or 2h30m" : undefined;
  const named = (e: Environment) => e.names[0] ?? e.digest.slice(0, 12);

  return (
    <form className="panel nb-form" aria-label="Create a notebook"
          onSubmit={(event) => { event.preventDefault(); if (!invalid) void create.run(); }}>
      <label>Notebook name
        <input value={name} onChange={(e) => setName(e.target.value)} required autoComplete="off"
               spellCheck={false} placeholder="e.g. lab" maxLength={63}
               aria-invalid={!!invalid && invalid.startsWith("The name")} />
      </label>
      <label>Cluster
        <select value={cluster} onChange={(e) => setCluster(e.target.value)}>
          {(clusters.data ?? [{ name: "local" } as Cluster]).map((c) => (
            <option key={c.name} value={c.name}>{c.name}{c.type && c.type !== c.name ? ` (${c.type})` : ""}</option>
          ))}
        </select>
      </label>
      <label>CPUs
        <input type="number" min={0.1} step="any" value={cpus} className="nb-number"
               onChange={(e) => setCpus(e.target.value)} required />
      </label>
      <label>Memory
        <input value={memory} onChange={(e) => setMemory(e.target.value)} className="nb-number"
               autoComplete="off" spellCheck={false} placeholder="no limit" />
      </label>
      <label>GPUs
        <input type="number" min={0} step={1} value={gpus} className="nb-number"
               onChange={(e) => setGpus(e.target.value)} required />
      </label>
      <label>Environment
        <select value={environment} onChange={(e) => setEnvironment(e.target.value)}>
          <option value="">The server's Python</option>
          {(envs.data ?? []).filter((e) => e.state === "ready" || e.state === "resolved").map((e) => (
            <option key={e.digest} value={named(e)}>{named(e)}</option>
          ))}
        </select>
      </label>
      <label>Idle timeout
        <input value={idle} onChange={(e) => setIdle(e.target.value)} required className="nb-number"
               list="nb-idle" autoComplete="off" spellCheck={false} />
      </label>
      <datalist id="nb-idle">
        {["30m", "1h", "2h", "8h", "1d"].map((d) => <option key={d} value={d} />)}
      </datalist>
      <button type="submit" className="primary" disabled={create.busy || !name.trim() || !!invalid}>
        {create.busy ? "Creating…" : "Create notebook"}
      </button>
      <span className={invalid ? "hint nb-invalid" : "muted hint"} role={invalid ? "alert" : undefined}>
        {invalid ?? (chosen ? `${NAME_HINT}; ${chosen.name} has ${chosen.max_cpus} CPUs, ${bytes(chosen.max_memory)}`
          + `, ${chosen.max_gpus} GPUs` : NAME_HINT)}</span>
      <ErrorBox error={create.error} onClose={create.clear} />
    </form>
  );
}

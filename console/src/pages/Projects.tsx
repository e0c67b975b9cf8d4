// Projects: workspaces whose grants hold only for their resources, and whose quotas bound what
// their work may use at once (CPUs, GPUs, memory, endpoints, storage).
import { useState } from "react";
import { Link, Route, Routes, useNavigate, useParams } from "react-router-dom";
import { del, get, patch, post } from "../api";
import { Notice } from "../components/Dialogs";
import { ErrorBox, Loading, PageHeader } from "../components/ErrorBox";
import { number, when } from "../format";
import { useAction, useApi, useCan } from "../hooks";
import { ConfirmButton, Table } from "./jobs/shared";
import { pathOf, Project, QUOTAS } from "./access/types";
import "./access/Access.css";

export default function Projects() {
  return (
    <Routes>
      <Route index element={<ProjectList />} />
      <Route path=":name" element={<ProjectPage />} />
    </Routes>
  );
}

const quotaText = (quotas: Record<string, number>) => QUOTAS.filter(([key]) => key in quotas)
  .map(([key, label]) => `${label} ${number(quotas[key])}`);

function ProjectList() {
  const projects = useApi((signal) => get<Project[]>("/projects", undefined, signal), []);
  const [manage] = useCan([["projects:Manage", "project/*"]]);
  const [notice, setNotice] = useState<React.ReactNode>();
  const list = projects.data;
  return (
    <div className="iam-page">
      <PageHeader title="Projects">
        <button type="button" onClick={projects.reload} disabled={projects.loading}>Refresh</button>
      </PageHeader>
      <p className="muted lead">A role given in a project holds for that project's resources only; its quotas bound
        what its work may use at once.</p>
      {manage && (
        <ProjectForm label="Create a project" submit="Create project" onSave={async (body) => {
          const made = await post<Project>("/projects", body);
          setNotice(<>Created <Link to={pathOf("projects", made.name)}>{made.name}</Link></>);
          projects.reload();
        }} />
      )}
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={projects.error} />
      {!list && projects.loading && <Loading what="Loading projects" />}
      {list && (
        <Table label="Projects" head={["Name", "Description", "Quotas", "Created"]}
               empty={list.length === 0 ? "No projects yet" : undefined}>
          {list.map((p) => (
            <tr key={p.name}>
              <td><Link to={pathOf("projects", p.name)}>{p.name}</Link></td>
              <td className="muted">{p.description || "—"}</td>
              <td>{quotaText(p.quotas).map((q) => <span key={q} className="ops-chip">{q}</span>)}
                {Object.keys(p.quotas).length === 0 && <span className="muted">none</span>}</td>
              <td>{when(p.created_at)}</td>
            </tr>
          ))}
        </Table>
      )}
    </div>
  );
}

interface ProjectBody { name?: string; description: string; quotas: Record<string, string | null> }

/** A project's name (when new), description and quotas; an empty quota is none. */
function ProjectForm({ project, label, submit, onSave }: {
  project?: Project; label: string; submit: string; onSave: (body: ProjectBody) => Promise<void>;
}) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState(project?.description ?? "");
  const [quotas, setQuotas] = useState<Record<string, string>>(() => Object.fromEntries(
    QUOTAS.map(([key]) => [key, project && key in project.quotas ? String(project.quotas[key]) : ""])));
  const save = useAction(async () => {
    const given = Object.fromEntries(Object.entries(quotas).map(([k, v]) => [k, v.trim() || null]));
    await onSave({ ...(project ? {} : { name: name.trim() }), description: description.trim(),
                   quotas: project ? given : Object.fromEntries(Object.entries(given).filter(([, v]) => v !== null)) });
    if (!project) { setName(""); setDescription(""); setQuotas(Object.fromEntries(QUOTAS.map(([k]) => [k, ""]))); }
  });
  return (
    <form className="panel iam-form" aria-label={label} onSubmit={(event) => { event.preventDefault(); void save.run(); }}>
      {!project && (
        <label>Name{" "}
          <input value={name} onChange={(e) => setName(e.target.value)} required autoComplete="off" spellCheck={false}
                 placeholder="e.g. vision" />
        </label>
      )}
      <label>Description{" "}
        <input value={description} onChange={(e) => setDescription(e.target.value)} placeholder="optional" />
      </label>
      {QUOTAS.map(([key, text]) => (
        <label key={key}>{text}{" "}
          <input type="number" min={0} step="any" className="iam-quota" value={quotas[key]} placeholder="none"
                 onChange={(e) => setQuotas({ ...quotas, [key]: e.target.value })} />
        </label>
      ))}
      <button type="submit" className="primary" disabled={save.busy || (!project && !name.trim())}>
        {save.busy ? "Saving…" : submit}
      </button>
      <ErrorBox error={save.error} onClose={save.clear} />
    </form>
  );
}

function ProjectPage() {
  const name = useParams().name!;
  const navigate = useNavigate();
  const project = useApi((signal) => get<Project>(pathOf("projects", name), undefined, signal), [name]);
  const [manage] = useCan([["projects:Manage", `project/${name}`]]);
  const [notice, setNotice] = useState<string>();
  const p = project.data;
  return (
    <div className="iam-page">
      <div className="breadcrumbs"><Link to="/projects">Projects</Link> / {name}</div>
      <PageHeader title={name}>
        {p && manage && (
          <ConfirmButton label="Delete" title={`Delete project ${name}?`} confirm="Delete project" danger
                         onConfirm={async () => { await del(pathOf("projects", name)); navigate("/projects"); }}>
            <p>The project and every grant made in it go; its resources stay.</p>
          </ConfirmButton>
        )}
      </PageHeader>
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={project.error} />
      {!p && project.loading && <Loading what="Loading the project" />}
      {p && (
        <>
          <section className="panel" aria-label="About">
            <dl className="props">
              <dt>Description</dt><dd>{p.description || "—"}</dd>
              {QUOTAS.map(([key, label]) => <Quota key={key} label={label} value={p.quotas[key]} />)}
              <dt>Created</dt><dd>{when(p.created_at)}</dd>
            </dl>
          </section>
          {manage && (
            <ProjectForm key={JSON.stringify(p)} project={p} label="Edit the project" submit="Save"
                         onSave={async (body) => {
                           await patch(pathOf("projects", name), body);
                           setNotice("Saved");
                           project.reload();
                         }} />
          )}
        </>
      )}
    </div>
  );
}

function Quota({ label, value }: { label: string; value: number | undefined }) {
  return <><dt>{label}</dt><dd>{value === undefined ? "no quota" : number(value)}</dd></>;
}

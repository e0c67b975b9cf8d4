// A policy's document in a text area: written here, checked by the server (which names the
// statement and field at fault), saved, deleted. Read-only for whoever may not manage it.
import { useEffect, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { get, post, put } from "../../api";
import { Notice } from "../../components/Dialogs";
import { ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { when } from "../../format";
import { useAction, useApi, useCan } from "../../hooks";
import { DeletePolicy } from "./PolicyList";
import { Binding, pathOf, Policy } from "./types";

const EXAMPLE = { statements: [
  { sid: "read-sales", effect: "allow", actions: ["tables:List", "tables:Read"], resources: ["database/sales", "table/sales/*"] },
] };
const show = (document: unknown) => JSON.stringify(document, null, 2);

export default function PolicyEditor() {
  const name = useParams().name;  // none: a new policy
  const navigate = useNavigate();
  const policy = useApi((signal) => name ? get<Policy>(pathOf("policies", name), undefined, signal)
    : Promise.resolve(undefined), [name]);
  const [manage] = useCan([["policies:Manage", `policy/${name ?? "*"}`]]);
  const [newName, setNewName] = useState("");
  const [description, setDescription] = useState("");
  const [text, setText] = useState(name ? "" : show(EXAMPLE));
  const [notice, setNotice] = useState<string>();
  useEffect(() => {
    if (policy.data) { setDescription(policy.data.description); setText(show(policy.data.document)); }
  }, [policy.data]);

  const save = useAction(async () => {
    let document: unknown;
    try {
      document = JSON.parse(text);
    } catch (exc) {
      throw new Error(`The document is not JSON: ${(exc as Error).message}`);
    }
    if (name) {
      await put<Policy>(pathOf("policies", name), { description, document });
      setNotice("Saved: it applies at once to everyone who holds it");
      policy.reload();
    } else {
      const made = await post<Policy>("/policies", { name: newName.trim(), description, document });
      navigate(pathOf("policies", made.name));
    }
  });

  if (name && !policy.data) {
    return (
      <div className="iam-page">
        <div className="breadcrumbs"><Link to="/policies">Policies</Link> / {name}</div>
        <ErrorBox error={policy.error} />
        {policy.loading && <Loading what="Loading the policy" />}
      </div>
    );
  }
  const p = policy.data;
  return (
    <div className="iam-page">
      <div className="breadcrumbs"><Link to="/policies">Policies</Link> / {name ?? "new"}</div>
      <PageHeader title={name ?? "Create policy"}>
        {p && manage && <DeletePolicy name={p.name} className="danger" onDone={() => navigate("/policies")} />}
      </PageHeader>
      {p && <p className="muted lead">Created {when(p.created_at)}, last changed {when(p.updated_at)}.</p>}
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <form className="panel iam-editor" aria-label={name ? `Policy ${name}` : "Create a policy"}
            onSubmit={(event) => { event.preventDefault(); setNotice(undefined); void save.run(); }}>
        {!name && (
          <label>Name{" "}
            <input value={newName} onChange={(e) => setNewName(e.target.value)} required autoComplete="off"
                   spellCheck={false} placeholder="e.g. sales-read" />
          </label>
        )}
        <label>Description{" "}
          <input value={description} onChange={(e) => setDescription(e.target.value)} readOnly={!manage} placeholder="optional" />
        </label>
        <label htmlFor="policy-document">Document (JSON)</label>
        <div className="iam-document">
          <textarea id="policy-document" value={text} onChange={(e) => setText(e.target.value)} readOnly={!manage}
                    spellCheck={false} rows={Math.min(30, Math.max(10, text.split("\n").length + 1))}
                    aria-invalid={save.error ? true : undefined} aria-describedby="policy-problem" />
          <div id="policy-problem" className="iam-problem">
            <ErrorBox error={save.error} onClose={save.clear} />
            {!save.error && <DocumentHelp />}
          </div>
        </div>
        {manage && (
          <div className="row">
            <button type="submit" className="primary" disabled={save.busy || (!name && !newName.trim())}>
              {save.busy ? "Saving…" : name ? "Save policy" : "Create policy"}
            </button>
            {p && <button type="button" onClick={() => { setText(show(p.document)); setDescription(p.description); save.clear(); }}>
              Undo changes</button>}
          </div>
        )}
      </form>
      {p && <Holders name={p.name} />}
    </div>
  );
}

function DocumentHelp() {
  return (
    <div className="muted hint">
      <p>Each statement has <code>effect</code> (<code>allow</code> or <code>deny</code>), <code>actions</code>{" "}
        (<code>tables:Read</code>, <code>tables:*</code>) and <code>resources</code> (<code>table/sales/*</code>);
        optionally a <code>sid</code> and <code>conditions</code> (<code>source_ip</code>, <code>hours_utc</code>,{" "}
        <code>weekdays</code>, <code>after</code>, <code>before</code>, <code>owner</code>).</p>
      <p>The server checks the document when it is saved and names the statement and field at fault.</p>
    </div>
  );
}

/** Who holds the policy (everywhere or in a project). */
function Holders({ name }: { name: string }) {
  const bindings = useApi((signal) => get<Binding[]>("/bindings", undefined, signal), [name]);
  const mine = (bindings.data ?? []).filter((b) => b.given === `policy ${name}` || b.given.startsWith(`policy ${name} in project `));
  if (!bindings.data) return <ErrorBox error={bindings.error} />;
  return (
    <section aria-label="Held by">
      <h2>Held by</h2>
      {mine.length === 0 ? <p className="muted">Nobody yet: grant it on the <Link to="/access">Access</Link> page.</p> : (
        <ul className="iam-holders">
          {mine.map((b) => <li key={b.id}>{b.subject}{b.given.includes(" in project ") ? ` (${b.given.split(" in ")[1]})` : ""}</li>)}
        </ul>
      )}
    </section>
  );
}

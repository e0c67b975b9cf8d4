// Notebooks: the caller's JupyterLab servers, each with its state, cluster, resources and idle
// timeout (and when and why it stopped); create one, open it in a new tab, stop, start, delete.
// Only "/notebooks" is the console's: "/notebooks/NAME/" is the notebook itself (the proxy), so
// this page has no pages below it.
import { useState } from "react";
import { Check, del, get, Me, post } from "../api";
import { Confirm, Notice } from "../components/Dialogs";
import { Empty, ErrorBox, Loading, PageHeader, State } from "../components/ErrorBox";
import { bytes, when } from "../format";
import { useAction, useApi, useCan } from "../hooks";
import CreateNotebook from "./NotebooksCreate";
import { durationText, labUrl, Notebook, notebookPath } from "./NotebooksTypes";
import "./Notebooks.css";

/** Whether a notebook's state is on its way somewhere (the list is asked again sooner). */
const MOVING = new Set(["starting", "stopping"]);

export default function Notebooks() {
  const [fast, setFast] = useState(false);
  const notebooks = useApi((signal) => get<Notebook[]>("/notebooks", undefined, signal)
    .then((list) => {
      setFast(list.some((n) => MOVING.has(n.state)));
      return list;
    }), [], fast ? 1000 : 5000);
  const [deleting, setDeleting] = useState<Notebook>();
  const [notice, setNotice] = useState<React.ReactNode>();
  const list = notebooks.data;
  const me = useApi((signal) => get<Me>("/me", undefined, signal), []);
  const [mayCreate] = useCan([["notebooks:Create", "notebook/*"]]);
  // One question for the page: each notebook's stop/start and delete. Asked without its owner,
  // it is a yes only where no ownership is needed (an admin's): an owner's own are theirs to
  // stop, start and delete; one shared with the caller is theirs to open only.
  const granted = useCan(list ? list.flatMap((n): Check[] => [
    ["notebooks:Stop", `notebook/${n.name}`], ["notebooks:Start", `notebook/${n.name}`],
    ["notebooks:Delete", `notebook/${n.name}`]]) : []);
  const rights = (list ?? []).flatMap((n, i) => granted.slice(i * 3, i * 3 + 3)
    .map((yes) => yes || (!!me.data && n.owner === me.data.user)));
  const act = useAction(async (notebook: Notebook, action: "stop" | "start") => {
    await post(notebookPath(notebook.name, `/${action}`));
    setNotice(action === "stop" ? `Stopping notebook ${notebook.name}: its files stay`
      : `Starting notebook ${notebook.name}`);
    setFast(true);
    notebooks.reload();
  });

  return (
    <div className="nb-page">
      <PageHeader title="Notebooks">
        <button type="button" onClick={notebooks.reload} disabled={notebooks.loading}>Refresh</button>
      </PageHeader>
      <p className="muted lead">JupyterLab on a cluster, signed in as you: the SDK, the CLI and MLflow are set up
        inside, <code>%load_ext cumulo</code> gives a <code>%%sql</code> cell that returns a DataFrame from the
        lake. Its files live in your folder in Cumulo's storage, so they stay when it stops; it stops by itself
        after its idle timeout.</p>
      {mayCreate && (
        <CreateNotebook onCreated={(made) => {
          setNotice(<>Created notebook {made.name}: <a href={labUrl(made)} target="_blank" rel="noopener">open it</a>{" "}
            once it is running</>);
          setFast(true);
          notebooks.reload();
        }} />
      )}
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={notebooks.error} />
      <ErrorBox error={act.error} onClose={act.clear} />
      {!list && notebooks.loading && <Loading what="Loading notebooks" />}
      {list && list.length === 0 && (
        <Empty>No notebooks yet.{mayCreate ? " Create one above, or" : " Create one"} from a shell:{" "}
          <code>cumulo notebooks create lab</code></Empty>
      )}
      {list && list.length > 0 && (
        <div className="grid-wrap" tabIndex={0}>
          <table className="grid" aria-label="Notebooks">
            <thead>
              <tr>
                <th scope="col">Name</th><th scope="col">State</th><th scope="col">Cluster</th>
                <th scope="col">Resources</th><th scope="col">Idle timeout</th><th scope="col">Stopped</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {list.map((n, i) => {
                const [mayStop, mayStart, mayDelete] = rights.slice(i * 3, i * 3 + 3);
                const up = n.state === "running" || n.state === "starting";
                return (
                  <tr key={n.name}>
                    <th scope="row" className="nb-name">{n.name}
                      {n.owner && <div className="muted nb-small">{n.owner}</div>}</th>
                    <td><State state={n.state} /></td>
                    <td>{n.cluster}</td>
                    <td>{resources(n)}</td>
                    <td>{durationText(n.idle_timeout)}</td>
                    <td className="nb-stopped">
                      {n.stopped_at || n.reason ? (
                        <>{n.stopped_at && <div>{when(n.stopped_at)}</div>}
                          {n.reason && <div className="muted nb-small">{n.reason}</div>}</>
                      ) : <span className="muted">—</span>}
                    </td>
                    <td className="actions-cell nb-actions">
                      {up && (
                        <a className="button" href={labUrl(n)} target="_blank" rel="noopener"
                           aria-label={`Open notebook ${n.name}`}>Open</a>
                      )}
                      {up && mayStop && (
                        <button type="button" onClick={() => void act.run(n, "stop")} disabled={act.busy}
                                aria-label={`Stop notebook ${n.name}`}>Stop</button>
                      )}
                      {(n.state === "stopped" || n.state === "failed") && mayStart && (
                        <button type="button" onClick={() => void act.run(n, "start")} disabled={act.busy}
                                aria-label={`Start notebook ${n.name}`}>Start</button>
                      )}
                      {mayDelete && (
                        <button type="button" className="link danger" onClick={() => setDeleting(n)}
                                aria-label={`Delete notebook ${n.name}`}>Delete</button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {deleting && (
        <Confirm title={`Delete notebook ${deleting.name}?`} confirm="Delete notebook"
                 run={() => del(notebookPath(deleting.name))} onClose={() => setDeleting(undefined)}
                 onDone={() => { setNotice(`Deleted notebook ${deleting.name}`); notebooks.reload(); }}>
          <p>Its JupyterLab server {deleting.state === "stopped" ? "is forgotten" : "stops and is forgotten"}. Its
            files stay in storage, in its owner's folder of the <code>notebooks</code> bucket (Files).</p>
        </Confirm>
      )}
    </div>
  );
}

/** "2 CPUs · 4 GB · 1 GPU". */
function resources(n: Notebook): string {
  const memory = typeof n.memory === "number" ? bytes(n.memory) : n.memory || "no memory limit";
  const parts = [`${n.cpus} CPU${n.cpus === 1 ? "" : "s"}`, memory];
  if (n.gpus) parts.push(`${n.gpus} GPU${n.gpus === 1 ? "" : "s"}`);
  return parts.join(" · ");
}

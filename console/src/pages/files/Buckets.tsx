import { useState } from "react";
import { Link } from "react-router-dom";
import { Check, del, get, post } from "../../api";
import { Empty, ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { useAction, useApi, useCan } from "../../hooks";
import { bytes, number, when } from "../../format";
import { Confirm, Notice } from "../../components/Dialogs";
import { browseLink, Bucket, bucketPath } from "./paths";

export function Buckets() {
  const buckets = useApi((signal) => get<{ buckets: Bucket[] }>("/files/buckets", undefined, signal), []);
  const [name, setName] = useState("");
  const [deleting, setDeleting] = useState<Bucket>();
  const [notice, setNotice] = useState<React.ReactNode>();
  const create = useAction(async (bucket: string) => {
    const made = await post<Bucket>("/files/buckets", { name: bucket });
    setName("");
    setNotice(<>Created bucket <Link to={browseLink(made.name)}>{made.name}</Link></>);
    buckets.reload();
  });

  const list = buckets.data?.buckets;
  // Asked once the buckets are known: one question for the page, each bucket's delete in it.
  const [mayCreate, ...mayDelete] = useCan(list ? [["files:CreateBucket", "bucket/*"],
    ...list.map((b): Check => ["files:DeleteBucket", `bucket/${b.name}`])] : []);
  return (
    <>
      <PageHeader title="Files">
        <button type="button" onClick={buckets.reload} disabled={buckets.loading}>Refresh</button>
      </PageHeader>
      <p className="muted lead">Buckets of objects, like S3. Open a bucket to browse its folders, upload and download.</p>
      {mayCreate && <form className="panel create-form" aria-label="Create a bucket"
            onSubmit={(event) => { event.preventDefault(); void create.run(name.trim()); }}>
        <label htmlFor="bucket-name">Bucket name</label>
        <input id="bucket-name" value={name} onChange={(e) => setName(e.target.value)} required
               placeholder="e.g. data" autoComplete="off" spellCheck={false} aria-describedby="bucket-rules"
               aria-invalid={create.error ? true : undefined} />
        <button type="submit" className="primary" disabled={create.busy || !name.trim()}>
          {create.busy ? "Creating…" : "Create bucket"}
        </button>
        <span id="bucket-rules" className="muted hint">3-63 characters: a-z, 0-9, “.” and “-”</span>
      </form>}
      <ErrorBox error={create.error} onClose={create.clear} />
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={buckets.error} />
      {buckets.loading && !list && <Loading what="Loading buckets" />}
      {list && list.length === 0 && (
        <Empty>No buckets yet. Create one above, or from the CLI: <code>cumulo files mb data</code></Empty>
      )}
      {list && list.length > 0 && (
        <div className="grid-wrap">
          <table className="grid">
            <caption>{list.length} bucket{list.length === 1 ? "" : "s"}</caption>
            <thead>
              <tr>
                <th scope="col">Name</th><th scope="col" className="num">Objects</th>
                <th scope="col" className="num">Size</th><th scope="col">Created</th>
                <th scope="col">Created by</th><th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {list.map((b, i) => (
                <tr key={b.name}>
                  <td><Link to={browseLink(b.name)} className="entry"><span className="icon bucket" aria-hidden />{b.name}</Link></td>
                  <td className="num">{number(b.objects)}</td>
                  <td className="num">{bytes(b.bytes)}</td>
                  <td>{when(b.created_at)}</td>
                  <td>{b.created_by ?? "—"}</td>
                  <td className="actions-cell">
                    {mayDelete[i] && <button type="button" className="link danger" onClick={() => setDeleting(b)}
                            aria-label={`Delete bucket ${b.name}`}>Delete</button>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {deleting && (
        <Confirm title={`Delete bucket ${deleting.name}?`} confirm="Delete bucket"
                 run={() => del(bucketPath(deleting.name))} onClose={() => setDeleting(undefined)}
                 onDone={() => { setNotice(`Deleted bucket ${deleting.name}`); buckets.reload(); }}>
          {deleting.objects > 0 ? (
            <p>It holds {number(deleting.objects)} object{deleting.objects === 1 ? "" : "s"} ({bytes(deleting.bytes)}):
              only an empty bucket can be deleted here. Delete its objects first, or from the CLI:
              {" "}<code>cumulo files rb {deleting.name} --recursive</code></p>
          ) : <p>The empty bucket <strong>{deleting.name}</strong> is deleted for good.</p>}
        </Confirm>
      )}
    </>
  );
}

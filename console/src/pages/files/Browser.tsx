import { useEffect, useRef, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { del, get } from "../../api";
import { Empty, ErrorBox, Loading, PageHeader } from "../../components/ErrorBox";
import { bytes, number, when } from "../../format";
import { useAction, useApi } from "../../hooks";
import { Confirm, Notice } from "../../components/Dialogs";
import {
  baseName, browseLink, bucketPath, downloadUrl, ObjectList, objectPath, StoredObject,
} from "./paths";
import { droppedFiles, pickedFiles, UploadList, UploadsGuard, useUploads } from "./Uploads";

type Deleting = { kind: "object"; object: StoredObject } | { kind: "prefix"; prefix: string };

/** One bucket at one prefix: folders and objects, uploads, downloads, deletes. */
export function Browser({ bucket, prefix }: { bucket: string; prefix: string }) {
  const navigate = useNavigate();
  // ?limit=N pages by N entries (the API's most, 1000, when not given)
  const limit = Number(useSearchParams()[0].get("limit")) || undefined;
  const first = useApi((signal) => get<ObjectList>(`${bucketPath(bucket)}/objects`,
                                                   { prefix, delimiter: "/", limit }, signal), [bucket, prefix, limit]);
  const [more, setMore] = useState<ObjectList[]>([]);
  const [filter, setFilter] = useState("");
  const [selected, setSelected] = useState<StoredObject>();
  const [deleting, setDeleting] = useState<Deleting>();
  const [notice, setNotice] = useState<string>();
  const [dragging, setDragging] = useState(false);
  const [folderName, setFolderName] = useState<string>();
  const uploads = useUploads(first.reload);
  const folderInput = useRef<HTMLInputElement>(null);
  const prefixNow = useRef(prefix);
  prefixNow.current = prefix;

  useEffect(() => { setMore([]); }, [first.data]);
  useEffect(() => { setMore([]); setFilter(""); setSelected(undefined); setFolderName(undefined); }, [prefix]);
  useEffect(() => { folderInput.current?.setAttribute("webkitdirectory", ""); }, []);

  // The listing of this bucket and prefix only: not the last one's while the new one loads.
  const listed = first.data?.bucket === bucket && first.data.prefix === prefix ? first.data : undefined;
  const pages = listed ? [listed, ...more] : [];
  const cursor = pages.at(-1)?.next_cursor;
  const next = useAction(async () => {
    if (!cursor) return;
    const page = await get<ObjectList>(`${bucketPath(bucket)}/objects`, { prefix, delimiter: "/", limit, cursor });
    // Kept only if the page still shows that folder (not another one opened meanwhile).
    setMore((list) => page.prefix === prefixNow.current ? [...list, page] : list);
  });

  const needle = filter.trim().toLowerCase();
  const matches = (key: string) => !needle || baseName(key).toLowerCase().includes(needle);
  const folders = pages.flatMap((page) => page.prefixes).filter(matches);
  const objects = pages.flatMap((page) => page.objects).filter((o) => matches(o.key));
  const shown = pages.reduce((n, page) => n + page.prefixes.length + page.objects.length, 0);

  const onDrop = async (event: React.DragEvent) => {
    event.preventDefault();
    setDragging(false);
    const picked = await droppedFiles(event.dataTransfer);
    if (picked.length) uploads.add(bucket, prefix, picked);
  };
  const onPick = (event: React.ChangeEvent<HTMLInputElement>) => {
    const picked = pickedFiles(event.target.files);
    event.target.value = "";
    if (picked.length) uploads.add(bucket, prefix, picked);
  };

  const segments = prefix ? prefix.slice(0, -1).split("/") : [];
  const here = `${bucket}/${prefix}`;
  return (
    <>
      <nav className="breadcrumbs" aria-label="Breadcrumbs">
        <Link to="/files">Buckets</Link>
        <span aria-hidden> / </span>
        {segments.length ? <Link to={browseLink(bucket)}>{bucket}</Link> : <span aria-current="page">{bucket}</span>}
        {segments.map((segment, i) => {
          const path = segments.slice(0, i + 1).join("/") + "/";
          return (
            <span key={path}>
              <span aria-hidden> / </span>
              {i === segments.length - 1
                ? <span aria-current="page">{segment}</span>
                : <Link to={browseLink(bucket, path)}>{segment}</Link>}
            </span>
          );
        })}
      </nav>
      <PageHeader title={prefix ? `${baseName(prefix)}/` : bucket}>
        <button type="button" onClick={first.reload} disabled={first.loading}>Refresh</button>
        <button type="button" onClick={() => setFolderName("")}>New folder</button>
        <label className="button file-button">
          Upload folder
          <input ref={folderInput} type="file" multiple onChange={onPick} className="sr-only" aria-label="Upload folder" />
        </label>
        <label className="button primary file-button">
          Upload files
          <input type="file" multiple onChange={onPick} className="sr-only" aria-label="Upload files" />
        </label>
      </PageHeader>

      {folderName !== undefined && (
        <form className="panel create-form" aria-label="New folder" onSubmit={(event) => {
          event.preventDefault();
          const name = folderName.trim().replace(/^\/+|\/+$/g, "");
          if (name) navigate(browseLink(bucket, `${prefix}${name}/`));
        }}>
          <label htmlFor="folder-name">Folder name</label>
          <input id="folder-name" value={folderName} autoFocus required spellCheck={false}
                 onChange={(e) => setFolderName(e.target.value)} placeholder="e.g. raw" />
          <button type="submit" className="primary" disabled={!folderName.trim()}>Open folder</button>
          <button type="button" onClick={() => setFolderName(undefined)}>Cancel</button>
          <span className="muted hint">A folder is a key prefix: it exists once a file is uploaded into it.</span>
        </form>
      )}

      <UploadList items={uploads.items} onClear={uploads.clearFinished} onStop={uploads.stop} />
      <UploadsGuard bucket={bucket} active={uploads.active} />
      <Notice onClose={() => setNotice(undefined)}>{notice}</Notice>
      <ErrorBox error={first.error} />
      {first.error && <p><Link to="/files">Back to the buckets</Link></p>}

      {listed && (
        <section className={`drop-zone${dragging ? " dragging" : ""}`} aria-label={`Objects in ${here}`}
                 onDragEnter={(e) => { e.preventDefault(); setDragging(true); }}
                 onDragOver={(e) => { e.preventDefault(); e.dataTransfer.dropEffect = "copy"; }}
                 onDragLeave={(e) => { if (!e.currentTarget.contains(e.relatedTarget as Node)) setDragging(false); }}
                 onDrop={onDrop}>
          {dragging && <div className="drop-hint" aria-hidden>Drop files to upload them to {here}</div>}
          <div className="row listing-tools">
            <label htmlFor="object-filter" className="sr-only">Filter by name</label>
            <input id="object-filter" type="search" placeholder="Filter by name" value={filter}
                   onChange={(e) => setFilter(e.target.value)} />
            <span className="muted">
              {number(folders.length)} folder{folders.length === 1 ? "" : "s"}, {number(objects.length)} object{objects.length === 1 ? "" : "s"}
              {cursor ? " (more to load)" : ""}
            </span>
            <span className="spacer" />
            <span className="muted hint">Drag files here to upload</span>
          </div>
          {shown === 0 ? (
            <Empty>
              {prefix ? <>No objects under <code>{here}</code>.</> : <>The bucket <strong>{bucket}</strong> is empty.</>}
              {" "}Drop files here or choose <em>Upload files</em>; from the CLI:
              {" "}<code>cumulo files cp ./sales.csv {here}</code>
            </Empty>
          ) : (
            <div className="grid-wrap">
              <table className="grid objects">
                <thead>
                  <tr>
                    <th scope="col">Name</th><th scope="col" className="num">Size</th>
                    <th scope="col" className="hide-narrow">Type</th><th scope="col">Last modified</th>
                    <th scope="col"><span className="sr-only">Actions</span></th>
                  </tr>
                </thead>
                <tbody>
                  {folders.map((p) => (
                    <tr key={p}>
                      <td><Link to={browseLink(bucket, p)} className="entry"><span className="icon folder" aria-hidden />{baseName(p)}/</Link></td>
                      <td className="num muted">—</td><td className="hide-narrow muted">folder</td><td className="muted">—</td>
                      <td className="actions-cell">
                        <button type="button" className="link danger" aria-label={`Delete folder ${baseName(p)}`}
                                onClick={() => setDeleting({ kind: "prefix", prefix: p })}>Delete</button>
                      </td>
                    </tr>
                  ))}
                  {objects.map((o) => (
                    <tr key={o.key} aria-selected={selected?.key === o.key}>
                      <td>
                        <button type="button" className="link entry" onClick={() => setSelected(o)}
                                aria-label={`${baseName(o.key)}: details`}>
                          <span className="icon file" aria-hidden />{baseName(o.key)}
                        </button>
                      </td>
                      <td className="num">{bytes(o.size)}</td>
                      <td className="hide-narrow">{o.content_type}</td>
                      <td>{when(o.modified_at)}</td>
                      <td className="actions-cell">
                        <a href={downloadUrl(bucket, o.key)} download={baseName(o.key)}
                           aria-label={`Download ${baseName(o.key)}`}>Download</a>
                        <button type="button" className="link danger" aria-label={`Delete ${baseName(o.key)}`}
                                onClick={() => setDeleting({ kind: "object", object: o })}>Delete</button>
                      </td>
                    </tr>
                  ))}
                  {folders.length + objects.length === 0 && (
                    <tr><td colSpan={5} className="muted">Nothing here matches “{filter}”</td></tr>
                  )}
                </tbody>
              </table>
            </div>
          )}
          {cursor && (
            <div className="row load-more">
              <button type="button" onClick={() => void next.run()} disabled={next.busy}>
                {next.busy ? "Loading…" : "Load more"}
              </button>
              <ErrorBox error={next.error} />
            </div>
          )}
        </section>
      )}
      {!listed && !first.error && <Loading what="Listing objects" />}

      {selected && (
        <ObjectDetails object={selected} onClose={() => setSelected(undefined)}
                       onDelete={() => setDeleting({ kind: "object", object: selected })} />
      )}

      {deleting?.kind === "object" && (
        <Confirm title={`Delete ${baseName(deleting.object.key)}?`} onClose={() => setDeleting(undefined)}
                 run={() => del(objectPath(bucket, deleting.object.key))}
                 onDone={() => {
                   setNotice(`Deleted ${bucket}/${deleting.object.key}`);
                   if (selected?.key === deleting.object.key) setSelected(undefined);
                   first.reload();
                 }}>
          <p>The object <code>{bucket}/{deleting.object.key}</code> ({bytes(deleting.object.size)}) is deleted for good.</p>
        </Confirm>
      )}
      {deleting?.kind === "prefix" && (
        <Confirm title={`Delete folder ${baseName(deleting.prefix)}/?`} confirm="Delete everything"
                 onClose={() => setDeleting(undefined)}
                 run={() => del<{ deleted: number }>(`${bucketPath(bucket)}/objects`, { prefix: deleting.prefix })}
                 onDone={(result) => {
                   setNotice(`Deleted ${number(result.deleted)} object${result.deleted === 1 ? "" : "s"} under ${bucket}/${deleting.prefix}`);
                   first.reload();
                 }}>
          <p>Every object under <code>{bucket}/{deleting.prefix}</code>, in every folder below it, is deleted for good.</p>
        </Confirm>
      )}
    </>
  );
}

function ObjectDetails({ object, onClose, onDelete }: {
  object: StoredObject; onClose: () => void; onDelete: () => void;
}) {
  const name = baseName(object.key);
  return (
    <section className="panel object-details" aria-label={`Object ${name}`}>
      <div className="row">
        <h2>{name}</h2>
        <span className="spacer" />
        <a className="button primary" href={downloadUrl(object.bucket, object.key)} download={name}>Download</a>
        <button type="button" className="danger" onClick={onDelete}>Delete</button>
        <button type="button" onClick={onClose} aria-label="Close the details">Close</button>
      </div>
      <dl className="props">
        <dt>Key</dt><dd className="mono">{object.key}</dd>
        <dt>Size</dt><dd>{bytes(object.size)} ({number(object.size)} bytes)</dd>
        <dt>Type</dt><dd>{object.content_type}</dd>
        <dt>SHA-256</dt><dd className="mono">{object.sha256}</dd>
        <dt>Modified</dt><dd>{when(object.modified_at)}{object.modified_by ? ` by ${object.modified_by}` : ""}</dd>
        <dt>Created</dt><dd>{when(object.created_at)}{object.created_by ? ` by ${object.created_by}` : ""}</dd>
        <dt>CLI</dt><dd className="mono">cumulo files cp {object.bucket}/{object.key} ./</dd>
      </dl>
    </section>
  );
}

import { useParams } from "react-router-dom";
import { Browser } from "./files/Browser";
import { Buckets } from "./files/Buckets";
import "./Files.css";

/** Object storage, like the S3 console: /files lists buckets, /files/BUCKET/a/b/ browses one. */
export default function Files() {
  const splat = useParams()["*"] ?? "";
  const path = splat.replace(/^\/+/, "");
  if (!path) return <div className="files-page"><Buckets /></div>;
  const slash = path.indexOf("/");
  const bucket = slash < 0 ? path : path.slice(0, slash);
  let prefix = slash < 0 ? "" : path.slice(slash + 1).replace(/\/{2,}/g, "/").replace(/^\//, "");
  if (prefix && !prefix.endsWith("/")) prefix += "/";
  return <div className="files-page"><Browser key={bucket} bucket={bucket} prefix={prefix} /></div>;
}

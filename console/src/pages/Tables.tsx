import { useParams } from "react-router-dom";
import { Catalog } from "./tables/Catalog";
import { Crawl } from "./tables/Crawl";
import { Load } from "./tables/Load";
import { TablePage } from "./tables/TablePage";
import "./Tables.css";

/** The data lake, like the Glue catalog with Athena beside it:
 *  /tables, /tables/DB, /tables/DB/TABLE, /tables/-/load and /tables/-/crawl
 *  ("-" is no database's name). */
export default function Tables() {
  const parts = (useParams()["*"] ?? "").split("/").filter(Boolean);
  let page: React.ReactNode;
  if (parts[0] === "-" && parts[1] === "load") page = <Load />;
  else if (parts[0] === "-" && parts[1] === "crawl") page = <Crawl />;
  else if (parts.length >= 2) page = <TablePage key={`${parts[0]}.${parts[1]}`} database={parts[0]} table={parts[1]} />;
  else page = <Catalog database={parts[0]} />;
  return <div className="tables-page">{page}</div>;
}

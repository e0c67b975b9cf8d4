import { PageHeader } from "../components/ErrorBox";

export default function Sql() {
  return <PageHeader title="Sql" />;
}

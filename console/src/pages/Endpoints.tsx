import { PageHeader } from "../components/ErrorBox";

export default function Endpoints() {
  return <PageHeader title="Endpoints" />;
}

import { PageHeader } from "../components/ErrorBox";

export default function Pipelines() {
  return <PageHeader title="Pipelines" />;
}

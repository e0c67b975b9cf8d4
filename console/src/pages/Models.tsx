import { PageHeader } from "../components/ErrorBox";

export default function Models() {
  return <PageHeader title="Models" />;
}

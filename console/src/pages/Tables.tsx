import { PageHeader } from "../components/ErrorBox";

export default function Tables() {
  return <PageHeader title="Tables" />;
}

import { PageHeader } from "../components/ErrorBox";

export default function Costs() {
  return <PageHeader title="Costs" />;
}

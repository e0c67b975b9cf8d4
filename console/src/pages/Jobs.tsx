import { PageHeader } from "../components/ErrorBox";

export default function Jobs() {
  return <PageHeader title="Jobs" />;
}

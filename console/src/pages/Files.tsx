import { PageHeader } from "../components/ErrorBox";

export default function Files() {
  return <PageHeader title="Files" />;
}

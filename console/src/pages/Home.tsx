import { PageHeader } from "../components/ErrorBox";

export default function Home() {
  return <PageHeader title="Home" />;
}

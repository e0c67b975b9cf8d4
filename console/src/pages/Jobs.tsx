import { Route, Routes } from "react-router-dom";
import JobList from "./jobs/JobList";
import JobPage from "./jobs/JobPage";
import "./Jobs.css";

export default function Jobs() {
  return (
    <Routes>
      <Route index element={<JobList />} />
      <Route path=":id" element={<JobPage />} />
    </Routes>
  );
}

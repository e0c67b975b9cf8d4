import { NavLink, Route, Routes } from "react-router-dom";
import { PageHeader } from "../components/ErrorBox";
import ModelList from "./models/ModelList";
import ModelPage from "./models/ModelPage";
import { StudyList, StudyPage } from "./models/Tuning";
import "./Models.css";

function Section({ children }: { children: React.ReactNode }) {
  return (
    <>
      <PageHeader title="Models" />
      <nav className="models-subnav" aria-label="Models">
        <NavLink to="/models" end>Registry</NavLink>
        <NavLink to="/models/-/tuning" end>Tuning</NavLink>
      </nav>
      {children}
    </>
  );
}

export default function Models() {
  return (
    <Routes>
      <Route index element={<Section><ModelList /></Section>} />
      <Route path="-/tuning" element={<Section><StudyList /></Section>} />
      <Route path="-/tuning/:runId" element={<StudyPage />} />
      <Route path=":name" element={<ModelPage />} />
    </Routes>
  );
}

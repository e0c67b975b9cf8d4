// Pipelines: the list (/pipelines) and the designer (/pipelines/new, /pipelines/NAME,
// /pipelines/NAME/runs/RUN). One designer route, so that saving a new pipeline or starting a
// run changes the address without drawing the canvas again.
import { lazy } from "react";
import { Route, Routes } from "react-router-dom";
import PipelineList from "./pipelines/List";
import "./Pipelines.css";

const Designer = lazy(() => import("./pipelines/Designer"));

export default function Pipelines() {
  return (
    <Routes>
      <Route index element={<PipelineList />} />
      <Route path="*" element={<Designer />} />
    </Routes>
  );
}

import { Route, Routes } from "react-router-dom";
import CreateEndpoint from "./endpoints/CreateEndpoint";
import EndpointList from "./endpoints/EndpointList";
import EndpointPage from "./endpoints/EndpointPage";
import "./Endpoints.css";

export default function Endpoints() {
  return (
    <Routes>
      <Route index element={<EndpointList />} />
      <Route path="new" element={<CreateEndpoint />} />
      <Route path=":name" element={<EndpointPage />} />
    </Routes>
  );
}

import { Route, Routes } from "react-router-dom";
import PolicyEditor from "./access/PolicyEditor";
import PolicyList from "./access/PolicyList";
import "./access/Access.css";

/** Custom policies: /policies, /policies/-/new ("-" is no policy's name), /policies/NAME. */
export default function Policies() {
  return (
    <Routes>
      <Route index element={<PolicyList />} />
      <Route path="-/new" element={<PolicyEditor />} />
      <Route path=":name" element={<PolicyEditor />} />
    </Routes>
  );
}

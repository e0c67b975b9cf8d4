import { Route, Routes } from "react-router-dom";
import GroupList from "./access/GroupList";
import GroupPage from "./access/GroupPage";
import "./access/Access.css";

/** Groups of users: /groups, /groups/NAME. */
export default function Groups() {
  return (
    <Routes>
      <Route index element={<GroupList />} />
      <Route path=":name" element={<GroupPage />} />
    </Routes>
  );
}

import { Route, Routes } from "react-router-dom";
import UserList from "./access/UserList";
import UserPage from "./access/UserPage";
import "./access/Access.css";

/** Users and service accounts: /users, /users/NAME. */
export default function Users() {
  return (
    <Routes>
      <Route index element={<UserList />} />
      <Route path=":name" element={<UserPage />} />
    </Routes>
  );
}

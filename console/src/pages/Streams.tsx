import { Route, Routes } from "react-router-dom";
import StreamList from "./streams/StreamList";
import StreamPage from "./streams/StreamPage";
import "./Streams.css";

export default function Streams() {
  return (
    <Routes>
      <Route index element={<StreamList />} />
      <Route path=":name" element={<StreamPage />} />
    </Routes>
  );
}

// loro-crdt (JS) peers against pylon_crdt, driven by tests/tools/js_interop.sh. Bytes travel
// as hex on stdout and in argv.
//   node interop.mjs make                     two JS peers' blobs, and what they merge to
//   node interop.mjs read <snapshot hex>      a doc the extension stored, as JS reads it
import { LoroCounter, LoroDoc, LoroText } from "loro-crdt";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));

function make() {
  // Peer A makes the doc in the pylon shape: one root map `row`, a field per key.
  const a = new LoroDoc();
  a.setRecordTimestamp(true);
  const row = a.getMap("row");
  row.set("title", "from js");
  row.setContainer("body", new LoroText()).insert(0, "Hello");
  row.setContainer("votes", new LoroCounter()).increment(2);
  a.commit({ message: "js peer a" });
  const snapshotA = a.export({ mode: "snapshot" });

  // Peer B starts from A's snapshot and edits concurrently with A's next edit.
  const b = new LoroDoc();
  b.import(snapshotA);
  b.setRecordTimestamp(true);
  b.getMap("row").get("body").insert(5, " world");
  b.getMap("row").get("votes").increment(3);
  b.commit({ message: "js peer b" });
  const updateB = b.export({ mode: "update", from: a.oplogVersion() });

  a.getMap("row").set("title", "from js, edited");
  a.commit({ message: "js peer a again" });
  const snapshotA2 = a.export({ mode: "snapshot" });

  a.import(updateB);
  console.log(JSON.stringify({
    a: hex(snapshotA2),
    b: hex(updateB),
    merged: a.toJSON().row,
  }));
}

function read(snapshotHex) {
  const doc = new LoroDoc();
  doc.import(unhex(snapshotHex));
  const messages = [];
  for (const changes of doc.getAllChanges().values()) {
    for (const c of changes) messages.push({ lamport: c.lamport, message: c.message ?? null, timestamp: c.timestamp });
  }
  messages.sort((x, y) => x.lamport - y.lamport);
  console.log(JSON.stringify({ row: doc.toJSON().row, changes: messages }));
}

const [mode, arg] = process.argv.slice(2);
if (mode === "make") make();
else if (mode === "read") read(arg);
else throw new Error(`usage: node interop.mjs make | read <snapshot hex>`);

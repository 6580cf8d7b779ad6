// loro-crdt (JS) peers against pylon_crdt, driven by tests/tools/js_interop.sh. Bytes travel
// as hex on stdout and in argv.
//   node interop.mjs make                     two JS peers' blobs, and what they merge to
//   node interop.mjs read <snapshot hex>      a doc the extension stored, as JS reads it
//   node interop.mjs edit <snapshot hex>      a JS peer's edit of a stored doc, as an update
//   node interop.mjs fresh                    a doc a JS client made for a row on its own
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

// A JS peer edits the fields of a doc the extension created (mergeable containers): it finds
// them under their keys like any child container.
function edit(snapshotHex) {
  const doc = new LoroDoc();
  doc.import(unhex(snapshotHex));
  const seen = doc.oplogVersion();
  const row = doc.getMap("row");
  row.get("body").insert(0, "js: ");
  row.get("votes").increment(1);
  doc.commit({ message: "js edit" });
  console.log(JSON.stringify({ update: hex(doc.export({ mode: "update", from: seen })), row: doc.toJSON().row }));
}

// A client that never loaded the server's doc creates the row's fields itself, mergeable.
function fresh() {
  const doc = new LoroDoc();
  const row = doc.getMap("row");
  row.ensureMergeableText("body").insert(0, "from a js client");
  row.ensureMergeableCounter("votes").increment(7);
  doc.commit({ message: "js fresh" });
  console.log(hex(doc.export({ mode: "snapshot" })));
}

const [mode, arg] = process.argv.slice(2);
if (mode === "make") make();
else if (mode === "read") read(arg);
else if (mode === "edit") edit(arg);
else if (mode === "fresh") fresh();
else throw new Error(`usage: node interop.mjs make | read <snapshot hex> | edit <snapshot hex> | fresh`);

-- Binary sync: snapshots, version vectors and updates a Loro peer can import.
\set fields '{"title":"string","body":"richtext"}'
SELECT pylon_crdt_apply_patch('Doc', 'a', :'fields', '{"title":"base","body":"The quick brown fox"}');

-- A second doc stands in for a peer: it starts from the first one's snapshot.
SELECT pylon_crdt_apply_update('Peer', 'a', :'fields', pylon_crdt_snapshot('Doc', 'a'));

-- Both edit different parts of the text, and the title, concurrently.
SELECT pylon_crdt_apply_patch('Doc', 'a', :'fields', '{"body":"A quick brown fox"}');
SELECT pylon_crdt_apply_patch('Peer', 'a', :'fields', '{"body":"The quick brown fox jumps","title":"peer title"}');

-- Exchange only what each side lacks; both converge and keep both text edits.
SELECT pylon_crdt_apply_update('Doc', 'a', :'fields',
    pylon_crdt_update_since('Peer', 'a', pylon_crdt_version('Doc', 'a')));
SELECT pylon_crdt_apply_update('Peer', 'a', :'fields',
    pylon_crdt_update_since('Doc', 'a', pylon_crdt_version('Peer', 'a')));
SELECT pylon_crdt_project('Doc', 'a', :'fields') = pylon_crdt_project('Peer', 'a', :'fields') AS converged,
       loro_version_includes(pylon_crdt_version('Doc', 'a'), pylon_crdt_version('Peer', 'a'))
       AND loro_version_includes(pylon_crdt_version('Peer', 'a'), pylon_crdt_version('Doc', 'a')) AS nothing_missing;

-- Up to date: the update since the current version is far smaller than the snapshot.
SELECT length(pylon_crdt_update_since('Doc', 'a', pylon_crdt_version('Doc', 'a')))
     < length(pylon_crdt_snapshot('Doc', 'a')) AS delta_is_small;

-- A row without a doc exports an empty doc that any peer can import.
SELECT pylon_crdt_apply_update('Fresh', 'x', :'fields', pylon_crdt_snapshot('Nobody', 'none'));

package backlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// State is the replication state that goes with a disk backlog: what a restarted proxy needs
// to PSYNC upstream from the recovered end and to answer PSYNC downstream. The backlog
// stores it, but the proxy owns its meaning.
type State struct {
	Replid    string // master_replid: the history the stream belongs to now
	Replid2   string // master_replid2, or Redis's all-zero ID
	SecondOff int64  // second_repl_offset, -1 when none
	// Epoch numbers the unbroken run of the stream the segments belong to. It changes only
	// with Reset (a full sync); a failover (+CONTINUE with a new replid) keeps it and changes
	// Replid, Replid2 and SecondOff through SetState.
	Epoch uint64
}

const (
	stateFile    = "state.json"
	stateVersion = 1
)

// stateJSON is the file's layout; the version lets a later format be told apart.
type stateJSON struct {
	Version   int    `json:"version"`
	Replid    string `json:"replid"`
	Replid2   string `json:"replid2"`
	SecondOff int64  `json:"second_offset"`
	Epoch     uint64 `json:"epoch"`
}

// readState loads the state file of dir; ok is false when there is none.
func readState(dir string) (st State, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("backlog: read state: %w", err)
	}
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return State{}, false, fmt.Errorf("%w: state file: %w", errBadSegment, err)
	}
	if j.Version != stateVersion {
		return State{}, false, fmt.Errorf("%w: state file version %d", errBadSegment, j.Version)
	}
	return State{Replid: j.Replid, Replid2: j.Replid2, SecondOff: j.SecondOff, Epoch: j.Epoch}, true, nil
}

// writeState replaces the state file atomically: a temporary file is written and synced,
// then renamed over the old one and the directory synced, so a crash leaves either the old
// state or the new one, never a torn mix. fault is the test hook (nil in production).
func writeState(dir string, st State, fault func(faultOp, int) (int, error)) error {
	b, err := json.Marshal(stateJSON{stateVersion, st.Replid, st.Replid2, st.SecondOff, st.Epoch})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	path := filepath.Join(dir, stateFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("backlog: write state: %w", err)
	}
	if fault != nil {
		if _, ferr := fault(opState, len(b)); ferr != nil {
			err = ferr
		}
	}
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backlog: write state: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("backlog: write state: sync directory: %w", err)
	}
	return nil
}

package backlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// recover loads the state and the segments; see openDisk. It runs before any other goroutine
// can see d.
func (d *disk) recover() (Recovery, error) {
	var rec Recovery
	os.Remove(filepath.Join(d.dir, stateFile+".tmp")) // a write that a crash interrupted
	st, hasState, err := readState(d.dir)
	if err != nil {
		if !errors.Is(err, errBadSegment) {
			return rec, err
		}
		d.opt.Logf("backlog: ignoring the state file in %s: %v", d.dir, err)
	}
	rec.State, rec.HasState, d.state = st, hasState, st

	starts, files, err := listSegments(d.dir)
	if err != nil {
		return rec, err
	}
	discard := func(start int64, why string) error {
		d.opt.Logf("backlog: deleting segment %s: %s", segName(start), why)
		rec.Discarded++
		return newSegment(d.dir, start).remove()
	}
	var cands []int64
	var hdrs []header
	for _, start := range starts {
		if has := files[start]; !has[0] || !has[1] {
			if err := discard(start, "its data or index file is missing"); err != nil {
				return rec, err
			}
			continue
		}
		h, f, err := readHeader(filepath.Join(d.dir, segName(start)))
		if f != nil {
			f.Close()
		}
		why := ""
		switch {
		case errors.Is(err, errBadSegment):
			why = err.Error()
		case err != nil:
			return rec, fmt.Errorf("backlog: recover: %w", err)
		case h.start != start:
			why = fmt.Sprintf("its header says it starts at %d", h.start)
		case !hasState:
			why = "there is no state file to say which history it belongs to"
		case h.epoch != st.Epoch:
			why = fmt.Sprintf("it belongs to epoch %d, the state to epoch %d", h.epoch, st.Epoch)
		}
		if why != "" {
			if err := discard(start, why); err != nil {
				return rec, err
			}
			continue
		}
		cands = append(cands, start)
		hdrs = append(hdrs, h)
	}
	if len(cands) == 0 {
		d.ring = newRing(d.opt.RAMTail, 1)
		d.first.Store(1)
		rec.First, rec.End = 1, 0
		if hasState {
			d.opt.Logf("backlog: state of epoch %d found but no segments of it: no history to resume", st.Epoch)
		}
		return rec, nil
	}

	// The newest segment was being written: check every record and cut a torn tail.
	lastStart := cands[len(cands)-1]
	last := newSegment(d.dir, lastStart)
	sc, err := scanSegment(last.path)
	if err != nil {
		return rec, fmt.Errorf("backlog: recover segment %s: %w", segName(lastStart), err)
	}
	keepIdx := sc.idxGood
	if sc.sealed {
		keepIdx += trailerSize
	}
	if sc.dataSize > sc.good || sc.idxSize > keepIdx {
		rec.Dropped = sc.dataSize - sc.good
		if err := cutFiles(last.path, sc.good, keepIdx); err != nil {
			return rec, err
		}
		d.opt.Logf("backlog: segment %s had a torn tail: dropped %d bytes (and %d index bytes) after offset %d",
			segName(lastStart), rec.Dropped, sc.idxSize-keepIdx, lastStart+sc.good-1)
	}
	last.last.Store(lastStart + sc.good - 1)
	kept := []*segment{last}
	if sc.sealed {
		last.sealedAt = sc.modTime
	}

	// Older segments are trusted by their seal; one without a seal (possible with FsyncNo
	// after a machine crash) is checked in full. The kept run must be contiguous: at a gap
	// everything older goes, because a backlog with a hole could serve a wrong next byte.
	next := lastStart
	for i := len(cands) - 2; i >= 0; i-- {
		s := newSegment(d.dir, cands[i])
		sc, ok, err := checkSealed(s.path)
		if err == nil && !ok {
			sc, err = scanSegment(s.path)
		}
		if err != nil && !errors.Is(err, errBadSegment) {
			return rec, fmt.Errorf("backlog: recover segment %s: %w", segName(s.start), err)
		}
		if err != nil || s.start+sc.good != next {
			why := fmt.Sprintf("it ends at offset %d but the next segment starts at %d", s.start+sc.good-1, next)
			if err != nil {
				why = err.Error()
			}
			for j := i; j >= 0; j-- {
				if err := discard(cands[j], "older than a gap in the stream: segment "+segName(s.start)+": "+why); err != nil {
					return rec, err
				}
			}
			break
		}
		if !sc.sealed {
			// Complete but unsealed: seal it now so the next recovery reads only its trailer.
			if err := sealFiles(s.path, sc.good, sc.idxGood); err != nil {
				return rec, err
			}
		}
		s.last.Store(s.start + sc.good - 1)
		s.sealedAt = sc.modTime
		kept = append(kept, s)
		next = s.start
	}
	for i := 0; i+1 < len(kept); i++ {
		kept[i].began = kept[i+1].sealedAt // kept is newest first here
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}

	end := last.last.Load()
	d.segs = kept
	d.first.Store(kept[0].start)
	d.ring = newRing(d.opt.RAMTail, end+1)
	d.synced.Store(end)
	d.history = true
	d.epochReplid = hdrs[len(hdrs)-1].replid
	if !sc.sealed {
		w, err := openWriter(last.path, sc.good, keepIdx)
		if err != nil {
			return rec, err
		}
		d.act, d.w = last, w
		d.sp = syncPoint{w: w, data: w.dataSize, idx: w.idxSize, end: end}
	}
	rec.History = true
	rec.EpochReplid = d.epochReplid
	rec.First, rec.End, rec.Segments = kept[0].start, end, len(kept)
	d.opt.Logf("backlog: recovered offsets %d-%d (%d bytes) in %d segments of epoch %d from %s",
		rec.First, rec.End, rec.End-rec.First+1, rec.Segments, st.Epoch, d.dir)
	return rec, nil
}

// cutFiles truncates a segment's files to the given sizes and syncs them, so that the cut is
// durable before anything is appended after it.
func cutFiles(path string, data, idx int64) error {
	for _, c := range []struct {
		ext  string
		size int64
	}{{dataExt, data}, {idxExt, idx}} {
		f, err := os.OpenFile(path+c.ext, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("backlog: cut torn tail: %w", err)
		}
		err = f.Truncate(c.size)
		if err == nil {
			err = f.Sync()
		}
		if e := f.Close(); err == nil {
			err = e
		}
		if err != nil {
			return fmt.Errorf("backlog: cut torn tail of %s: %w", filepath.Base(path+c.ext), err)
		}
	}
	return nil
}

// sealFiles cuts a complete segment to its valid records and appends its trailer.
func sealFiles(path string, good, idxGood int64) error {
	if err := cutFiles(path, good, idxGood); err != nil {
		return err
	}
	f, err := os.OpenFile(path+idxExt, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("backlog: seal %s: %w", filepath.Base(path), err)
	}
	_, err = f.WriteAt(trailer(good), idxGood)
	if err == nil {
		err = f.Sync()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("backlog: seal %s: %w", filepath.Base(path), err)
	}
	return nil
}

// openWriter opens a recovered segment's files to go on appending at the given sizes.
func openWriter(path string, dataSize, idxSize int64) (*segWriter, error) {
	data, err := os.OpenFile(path+dataExt, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("backlog: open segment: %w", err)
	}
	idx, err := os.OpenFile(path+idxExt, os.O_RDWR, 0)
	if err != nil {
		data.Close()
		return nil, fmt.Errorf("backlog: open segment: %w", err)
	}
	return &segWriter{data: data, idx: idx, dataSize: dataSize, idxSize: idxSize}, nil
}

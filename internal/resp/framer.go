package resp

// Framer frames the replies arriving on one connection in a single growing
// buffer: Buf[R:W] has been read but not yet framed. Replies are returned
// as offsets into Buf, which stay valid while the buffer grows (it is not
// compacted until Compact). It keeps the Scanner's place across calls, so
// a caller whose read timed out may call Next again and keep waiting for
// the same reply. The backend's dedicated connections and the migrator's
// raw connections both read through one.
type Framer struct {
	Buf  []byte
	R, W int
	sc   Scanner
}

// Next returns the offsets of the next complete reply in Buf, reading with
// read (into Buf[W:], grown to at least minBuf, or 512 bytes, and then
// doubled) until one
// is in. It returns ErrBadReply for bytes that cannot be RESP, else read's
// error (bytes read with it are kept).
func (f *Framer) Next(read func([]byte) (int, error), minBuf int) (start, end int, err error) {
	for {
		l, err := f.sc.Scan(f.Buf[f.R:f.W])
		if err != nil {
			return 0, 0, err
		}
		if l > 0 {
			start = f.R
			f.R += l
			return start, f.R, nil
		}
		if f.W == len(f.Buf) {
			nb := make([]byte, max(2*len(f.Buf), minBuf, 512))
			copy(nb, f.Buf[:f.W])
			f.Buf = nb
		}
		n, err := read(f.Buf[f.W:])
		f.W += n
		if err != nil {
			return 0, 0, err
		}
	}
}

// Buffered reports whether read bytes wait to be framed.
func (f *Framer) Buffered() bool { return f.R < f.W }

// Compact moves the unframed bytes to the front of Buf; offsets returned
// before are no longer valid.
func (f *Framer) Compact() {
	if f.R > 0 {
		f.W = copy(f.Buf, f.Buf[f.R:f.W])
		f.R = 0
	}
}

// Reset forgets everything read, and Buf too when it grew beyond keep.
func (f *Framer) Reset(keep int) {
	f.R, f.W = 0, 0
	f.sc.Reset()
	if cap(f.Buf) > keep {
		f.Buf = nil
	}
}

package sandbox

import (
	_ "embed"
	"encoding/binary"
)

// sampleMP4 is a real, playable three-second H.264 clip (96×96, no sound,
// about 4 KB): what the sandbox's CDN serves for every video file.
//
//go:embed sample.mp4
var sampleMP4 []byte

// SetVideoFile makes the CDN answer every video file with body and
// contentType instead of the sample clip (a file too large, or not a
// video); a nil body restores the clip.
func (s *Sandbox) SetVideoFile(body []byte, contentType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.videoBody, s.videoType = body, contentType
}

// videoBytes is the file served for a video's CDN path: the sample clip
// followed by a "free" box naming the path, so that each video's bytes
// (and so its stored name) differ; players skip free boxes.
func (s *Sandbox) videoBytes(path string) ([]byte, string) {
	s.mu.Lock()
	body, ctype := s.videoBody, s.videoType
	s.mu.Unlock()
	if body != nil {
		return body, ctype
	}
	out := make([]byte, 0, len(sampleMP4)+8+len(path))
	out = append(out, sampleMP4...)
	out = binary.BigEndian.AppendUint32(out, uint32(8+len(path)))
	out = append(out, "free"...)
	out = append(out, path...)
	return out, "video/mp4"
}

package graph

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCoverURL(t *testing.T) {
	img := func(u string) Media { return Media{ID: "c", MediaType: MediaTypeImage, MediaURL: u} }
	vid := func(media, thumb string) Media {
		return Media{ID: "c", MediaType: MediaTypeVideo, MediaURL: media, ThumbnailURL: thumb}
	}
	tests := []struct {
		name string
		m    Media
		want string
	}{
		{"image", img("i.jpg"), "i.jpg"},
		{"video uses its cover", vid("v.mp4", "v.jpg"), "v.jpg"},
		{"video without cover has none (media_url is a video)", vid("v.mp4", ""), ""},
		{"carousel: first image child, even after a video", Media{MediaType: MediaTypeCarousel, MediaURL: "v1.mp4",
			Children: []Media{vid("v1.mp4", "v1.jpg"), img("i2.jpg"), img("i3.jpg")}}, "i2.jpg"},
		{"carousel of videos: first video cover", Media{MediaType: MediaTypeCarousel,
			Children: []Media{vid("v1.mp4", ""), vid("v2.mp4", "v2.jpg")}}, "v2.jpg"},
		{"carousel without expanded children: its own media_url", Media{MediaType: MediaTypeCarousel, MediaURL: "first.jpg"}, "first.jpg"},
		{"carousel whose children have nothing", Media{MediaType: MediaTypeCarousel, MediaURL: "x.mp4",
			Children: []Media{vid("v.mp4", "")}}, ""},
		{"unknown type prefers a thumbnail", Media{MediaType: "STORY", MediaURL: "m", ThumbnailURL: "t"}, "t"},
		{"unknown type falls back to media_url", Media{MediaType: "STORY", MediaURL: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.m.CoverURL(); got != tt.want {
			t.Errorf("%s: CoverURL = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"30", 30 * time.Second}, {"-5", 0}, {"soon", 0},
		{epoch.Add(90 * time.Second).Format(httpTimeFormat), 90 * time.Second},
		{epoch.Add(-time.Hour).Format(httpTimeFormat), 0},
		{"99999999999", 7 * 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, epoch); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestDefaultSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep = %v", err)
	}
	if err := Sleep(context.Background(), time.Microsecond); err != nil {
		t.Errorf("Sleep = %v", err)
	}
	// A wait of nothing on an ended context ends with it, every time: the
	// caller must not go on to call Instagram.
	for range 100 {
		if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("Sleep(ended, 0) = %v", err)
		}
	}
}

func TestClientsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatalf("second client on the same registry: %v", err)
	}
	a.metrics.call("me", "ok")
	b.metrics.call("me", "ok")
	if got := testutil.ToFloat64(a.metrics.calls.WithLabelValues("me", "ok")); got != 2 {
		t.Errorf("shared counter = %v, want 2", got)
	}
}

func TestTemporary(t *testing.T) {
	for k := range kindNames {
		e := &Error{Kind: Kind(k)}
		want := k == int(KindThrottled) || k == int(KindTransient) || k == int(KindUnreachable) || k == int(KindTokenTooYoung)
		if e.Temporary() != want {
			t.Errorf("%v.Temporary() = %v", e.Kind, e.Temporary())
		}
		if e.Kind.String() == "" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if Kind(99).String() != "kind_99" {
		t.Errorf("unknown kind name = %s", Kind(99))
	}
}

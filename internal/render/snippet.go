package render

// Query is the canonical query string of o's display options: only those
// that differ from the defaults, in a fixed order. The same names are the
// snippet's data- attributes, so the setup page builds both from it.
func (o Options) Query() string { return o.query("") }

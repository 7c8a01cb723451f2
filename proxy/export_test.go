package proxy

// TestTimings is testTimings for the external tests of this package.
var TestTimings = testTimings

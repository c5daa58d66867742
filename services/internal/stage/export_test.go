package stage

// Run is run, for the external tests of every stage's command line.
var Run = run

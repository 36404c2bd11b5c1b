"""Native Windows/Linux enrollment: MS-XCEP enrollment policy and MS-WSTEP enrollment web services."""

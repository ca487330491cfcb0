"""Interactive calls' wire: the signature both ends check (`signing`) and the API's HTTP client (`http`)."""

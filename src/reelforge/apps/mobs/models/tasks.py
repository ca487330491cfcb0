"""Task names of the video-understanding adapters."""

TASK_PARTICIPATION = "video.participation"  # local: frames + OCR + speech + activity; hosted: TwelveLabs Pegasus
TASK_EMBED = "video.embed"  # local: MobileNetV2 + MiniLM + projection; hosted: TwelveLabs Marengo

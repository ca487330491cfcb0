"""The film studio's settings section: `film` (REELFORGE_FILM__...)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator


class Voice(BaseModel):
    """One voice a character may speak with. `id` is what a project names; the render pipeline maps it to a
    speech model's voice."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    label: str
    language: str = "en-US"
    description: str = ""
    # How the speech engines render it: a base pitch (semitones) and rate that a character's own pitch and rate
    # add to and multiply, and the espeak-ng voice+variant used when Piper cannot run.
    base_pitch: float = Field(default=0.0, ge=-12, le=12)
    base_rate: float = Field(default=1.0, ge=0.5, le=2.0)
    espeak_voice: str = Field(default="en-us", pattern=r"^[a-z]{2,3}(-[a-z0-9]{1,8})?(\+[a-z0-9]{1,8})?$")


def _default_voices() -> list[Voice]:
    return [
        Voice(id="narrator", label="Narrator", description="Even, unhurried; the default for narration",
              base_pitch=0.0, base_rate=0.97, espeak_voice="en-us+m3"),
        Voice(id="warm-female", label="Warm (female)", description="Warm mid-range voice",
              base_pitch=4.0, base_rate=1.0, espeak_voice="en-us+f3"),
        Voice(id="bright-female", label="Bright (female)", description="Light, quick, higher voice",
              base_pitch=6.5, base_rate=1.1, espeak_voice="en+f2"),
        Voice(id="warm-male", label="Warm (male)", description="Warm mid-range voice",
              base_pitch=-2.0, base_rate=1.0, espeak_voice="en-us+m1"),
        Voice(id="deep-male", label="Deep (male)", description="Low, slow, resonant voice",
              base_pitch=-5.0, base_rate=0.9, espeak_voice="en-us+m7"),
        Voice(id="young", label="Young", description="A child's or teenager's voice",
              base_pitch=8.0, base_rate=1.08, espeak_voice="en-us+f4"),
        Voice(id="elder", label="Elder", description="An older, slightly rough voice",
              base_pitch=-3.0, base_rate=0.88, espeak_voice="en+m4"),
    ]


class FilmLLMSettings(BaseModel):
    """An OpenAI-compatible chat-completions API (hosted, or local: llama.cpp, vLLM, Ollama, ...) that enriches
    the parser's breakdown with scene descriptions and image prompts. Unused while `base_url` or `model` is
    empty; a failure or a timeout keeps the parser's breakdown."""

    # The API's base, up to and including its version segment: requests go to `<base_url>/chat/completions`
    # (for example https://api.openai.com/v1 or http://127.0.0.1:8080/v1).
    base_url: str = ""
    model: str = ""
    api_key: SecretStr = SecretStr("")  # sent as `Authorization: Bearer ...` when not empty
    # The whole enrichment (every request of it) must end within this many seconds.
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    temperature: float = Field(default=0.4, ge=0, le=2)
    max_tokens: int = Field(default=2048, ge=64, le=32768)
    # Ask for `response_format: {"type": "json_object"}` (servers that do not know it may refuse the request).
    json_mode: bool = True
    # Scenes sent in one request; a longer script is sent in several.
    scenes_per_request: int = Field(default=20, ge=1, le=200)
    # What the model may answer per scene (longer strings are refused as malformed).
    max_description_chars: int = Field(default=600, ge=50, le=4000)
    max_prompt_chars: int = Field(default=800, ge=50, le=4000)

    @property
    def configured(self) -> bool:
        return bool(self.base_url.strip() and self.model.strip())


class FilmRenderSettings(BaseModel):
    """The `film.render` pipeline: price, parallelism, pictures, timing and encoding."""

    # Credits per rendered second (at least one per render). Reserved at submit for the estimated length times
    # `reserve_margin` (voices speak at their own pace); the rendered length sets the price, the rest is refunded.
    credits_per_second: float = Field(default=0.1, ge=0, le=100)
    reserve_margin: float = Field(default=1.25, ge=1, le=4)
    # Scenes whose voices, visuals and sound are made at once (each scene step is one task on a worker).
    scene_concurrency: int = Field(default=2, ge=1, le=64)
    # The image.generate model for the scenes' pictures: a model's name, `auto` (the first installed model that
    # can run here and is not a test model) or `none` (the project's backgrounds and sample photos only).
    image_model: str = "auto"
    image_pixels: int = Field(default=1024 * 576, ge=64 * 64, le=2048 * 2048)
    image_steps: int = Field(default=25, ge=1, le=150)
    image_guidance: float = Field(default=7.0, ge=0, le=30)
    # A title card opens the film when the script has a title (the job may turn it off).
    title_card_s: float = Field(default=3.0, ge=0.5, le=20)
    # Crossfade between scenes.
    transition_s: float = Field(default=0.5, ge=0, le=3)
    # The longest film a render may plan (422 `film_too_long` beyond).
    max_seconds: float = Field(default=1800.0, ge=10, le=6 * 3600)
    preset: str = Field(default="veryfast", pattern=r"^(ultrafast|superfast|veryfast|faster|fast|medium|slow)$")
    crf: int = Field(default=21, ge=0, le=51)
    compose_timeout_s: float = Field(default=6 * 3600.0, gt=0)
    # Measure the finished film's integrated loudness (EBU R128) into the job's output (a fast audio pass).
    measure_loudness: bool = True


class FilmYoutubeSettings(BaseModel):
    """Publishing to YouTube: an OAuth 2.0 client (authorization-code flow with PKCE) of the Google project that
    owns the YouTube Data API v3 quota, and the resumable upload's chunking and retries. Unused (the routes answer
    503 `youtube_not_configured`) while `client_id` is empty. The endpoints are Google's; tests point them at a
    local server that speaks the same protocol."""

    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_uri: str = "https://oauth2.googleapis.com/token"
    revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    # The Data API (`<api_base>/youtube/v3/channels`) and its upload endpoints
    # (`<upload_base>/youtube/v3/videos`, `.../thumbnails/set`, `.../captions`).
    api_base: str = "https://www.googleapis.com"
    upload_base: str = "https://www.googleapis.com/upload"
    # Where Google sends the browser back; empty: `<public_url>/v1/film/youtube/callback` (register it with Google).
    redirect_uri: str = ""
    # Where the callback sends a browser once connected (or not); empty: `<public_url>/film`.
    console_url: str = ""
    # upload: the videos; readonly: the channel's name; force-ssl: captions (drop it to publish without them).
    scopes: list[str] = Field(default_factory=lambda: [
        "https://www.googleapis.com/auth/youtube.upload",
        "https://www.googleapis.com/auth/youtube.readonly",
        "https://www.googleapis.com/auth/youtube.force-ssl",
    ], min_length=1)
    # Bytes per PUT of the resumable upload: a multiple of 256 KiB, as the protocol requires of every chunk but the
    # last.
    chunk_bytes: int = Field(default=8 * 1024 * 1024, ge=256 * 1024, le=1024 * 1024 * 1024)
    # Interrupted chunks (a dropped connection, a 5xx) in a row before the step gives up (the job's retry then
    # resumes the same upload session); the wait doubles from `backoff_s` up to `backoff_max_s`.
    max_retries: int = Field(default=5, ge=0, le=50)
    backoff_s: float = Field(default=1.0, ge=0, le=60)
    backoff_max_s: float = Field(default=30.0, ge=0, le=600)
    timeout_s: float = Field(default=60.0, gt=0, le=3600)  # per request
    # How long a connect's `state` may wait for its callback.
    state_ttl_s: float = Field(default=600.0, ge=30, le=3600)
    watch_url: str = "https://www.youtube.com/watch?v={video_id}"

    @model_validator(mode="after")
    def _chunk_multiple(self) -> FilmYoutubeSettings:
        if self.chunk_bytes % (256 * 1024):
            raise ValueError("film.youtube.chunk_bytes must be a multiple of 256 KiB (262144)")
        return self

    @property
    def configured(self) -> bool:
        return bool(self.client_id.strip())


class FilmSettings(BaseModel):
    """Projects (scripts, characters, backgrounds, music, shares) and the script analysis."""

    # The largest script a project may hold, in UTF-8 bytes (413 `script_too_large` beyond). A request body is
    # also bounded by the platform's `max_body_bytes` (1 MiB by default): raise both for longer scripts.
    max_script_bytes: int = Field(default=300_000, ge=1_000, le=5_000_000)
    max_characters: int = Field(default=50, ge=1, le=500)
    max_backgrounds: int = Field(default=100, ge=1, le=1000)
    max_music: int = Field(default=50, ge=1, le=500)
    max_shares: int = Field(default=50, ge=1, le=1000)
    page_size: int = Field(default=50, ge=1, le=200)
    # Voices a character may take, and the ranges of their rate (a multiplier of the speaking pace) and pitch
    # (semitones).
    voices: list[Voice] = Field(default_factory=_default_voices, min_length=1)
    default_voice: str = "narrator"
    rate_min: float = Field(default=0.5, gt=0, le=1)
    rate_max: float = Field(default=2.0, ge=1, le=4)
    pitch_min: float = Field(default=-12.0, ge=-24, le=0)
    pitch_max: float = Field(default=12.0, ge=0, le=24)
    # Estimated durations: speech at `words_per_minute` times the character's rate, action lines at a reading
    # pace, a pause after each line of dialogue, and no scene shorter than `min_scene_seconds`.
    words_per_minute: float = Field(default=150.0, gt=10, le=600)
    action_words_per_minute: float = Field(default=110.0, gt=10, le=600)
    line_pause_s: float = Field(default=0.3, ge=0, le=5)
    min_scene_seconds: float = Field(default=3.0, ge=0, le=120)
    llm: FilmLLMSettings = Field(default_factory=FilmLLMSettings)
    render: FilmRenderSettings = Field(default_factory=FilmRenderSettings)
    # Subtitle translation: `llm` translates through the language model above when it is configured; `none`
    # never translates (other languages are then reported as not available).
    translation: str = Field(default="llm", pattern=r"^(llm|none)$")


    youtube: FilmYoutubeSettings = Field(default_factory=FilmYoutubeSettings)

    @model_validator(mode="after")
    def _default_voice_listed(self) -> FilmSettings:
        ids = [v.id for v in self.voices]
        if len(set(ids)) != len(ids):
            raise ValueError("film.voices: voice ids must be unique")
        if self.default_voice not in ids:
            raise ValueError(f"film.default_voice {self.default_voice!r} is not one of film.voices")
        return self

    def voice_ids(self) -> set[str]:
        return {v.id for v in self.voices}

"""The Discord adapter: discord.py client -> IncomingMessage -> core -> Reply -> Discord.

When it answers: a mention in a guild text channel opens a public thread on
that message (thread id == message id) and the answer goes there; later
messages in a thread it knows are answered without a mention; DMs are always
answered; bots, itself included, never. Mentioned inside a thread it has not
seen, it reads that thread's earlier messages once as context.

Everything the bot sends carries `AllowedMentions.none()` (also set on the
client), so `@everyone` or role mentions written by the model ping nobody.
Rate limits and gateway reconnects are discord.py's own.

`[discord] api_url` sets the REST base; the gateway is whatever that API
returns from `/gateway/bot`, so one key points the whole client at a proxy
or a test server, and production (real Discord) is unchanged.

The parts: `translate` (pure payload functions), `connect` (API base and
connection errors), `outbox` (posting), `client` (the discord.Client),
`commands` (the /archbot application commands), `buttons` (Stop and 👍 / 👎,
dispatched by custom_id), `working` (the working message and its progress lines),
`adapter` (start, stop, doctor).
"""

import warnings

with warnings.catch_warnings():
    # discord.py 2.7 imports the stdlib `audioop` (voice), deprecated since Python 3.11;
    # importing the adapter must not trip `-W error` or pytest's filterwarnings=error.
    # Every submodule imports this package first, so this is where discord.py is loaded.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord  # noqa: F401

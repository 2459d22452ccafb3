"""What the agent saw and thought, step by step: self-contained HTML episode pages
(`pages.EpisodePages`, written by `frugal eval --viewer`) and a live window (`window.Window`,
`frugal watch`). Both take frames and the agent's `view_record()` rows; neither knows any agent."""

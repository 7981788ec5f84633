namespace OmniTune.Distributed;

/// <summary>
/// Ends the job when one communication call waits longer than the timeout (a peer died or hung), instead of letting every
/// rank hang. A timer watches whichever call is in progress; <see cref="Watch"/> marks one.
/// </summary>
public sealed class CollectiveWatchdog : IDisposable
{
    readonly object gate = new();
    readonly Action<string> onTimeout;
    readonly TimeProvider time;
    readonly ITimer timer;
    string? current;
    long startedAt;
    int fired;

    /// <summary>
    /// Watches calls for <paramref name="timeout"/>; <paramref name="onTimeout"/> receives the message and must end the
    /// process. A timer of <paramref name="time"/> (the system clock unless a test passes its own) checks the call in
    /// progress a tenth of the timeout apart.
    /// </summary>
    public CollectiveWatchdog(TimeSpan timeout, Action<string> onTimeout, TimeProvider? time = null)
    {
        if (timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), "the collective timeout must be positive");
        Timeout = timeout;
        this.onTimeout = onTimeout;
        this.time = time ?? TimeProvider.System;
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(Timeout.TotalMilliseconds / 10, 10, 1000));
        timer = this.time.CreateTimer(_ => Check(), null, tick, tick);
    }

    /// <summary>How long one call may wait.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Marks <paramref name="what"/> (e.g. "rank 1 of group 'world': all-reduce of 4096 floats") as in progress until disposed.</summary>
    public Scope Watch(string what)
    {
        lock (gate)
        {
            current = what;
            startedAt = time.GetTimestamp();
        }
        return new Scope(this);
    }

    void Done()
    {
        lock (gate) current = null;
    }

    /// <summary>Reports the call in progress once it has waited past the timeout (the timer calls this).</summary>
    void Check()
    {
        string? late = null;
        lock (gate)
        {
            if (current is not null && time.GetElapsedTime(startedAt) > Timeout) late = current;
        }
        if (late is null || Interlocked.Exchange(ref fired, 1) == 1) return;
        onTimeout($"{late} waited more than {Timeout.TotalSeconds:0.#} s for its peers: a rank has died or hung; ending the job " +
            "(raise --distributed-timeout-minutes if a step legitimately takes this long)");
    }

    /// <inheritdoc/>
    public void Dispose() => timer.Dispose();

    /// <summary>One watched call; disposing it marks the call finished.</summary>
    public readonly struct Scope(CollectiveWatchdog owner) : IDisposable
    {
        /// <inheritdoc/>
        public void Dispose() => owner.Done();
    }
}

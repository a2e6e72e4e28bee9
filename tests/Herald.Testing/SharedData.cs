namespace Herald.Testing;

/// <summary>
/// Finds the reference data in ../shared beside the repository (EWS schemas and examples). It is not
/// part of the repository: tests that need it call <see cref="RequireEws"/>, which skips loudly when absent.
/// </summary>
public static class SharedData
{
    /// <summary>The repository root (the folder holding Herald.slnx).</summary>
    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>../shared/ews, or null when it is not there.</summary>
    public static string? EwsFolder
    {
        get
        {
            var path = Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "ews"));
            return Directory.Exists(path) ? path : null;
        }
    }

    /// <summary>The EWS folder, or a skipped test with a clear message when it is absent.</summary>
    public static string RequireEws()
    {
        var folder = EwsFolder;
        if (folder is null)
        {
            Xunit.Assert.Skip($"SKIPPED LOUDLY: EWS reference data not found at {Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "ews"))}; these conformance tests need ../shared/ews beside the repository.");
        }

        return folder!;
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Herald.slnx")))
            {
                return dir.FullName;
            }
        }

        // Built into an artifacts folder outside the tree (--artifacts-path): the folder the sources were built from.
        var built = typeof(SharedData).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "HeraldRepositoryRoot")?.Value;
        if (built is not null && File.Exists(Path.Combine(built, "Herald.slnx")))
        {
            return built;
        }

        throw new InvalidOperationException("Cannot find the repository root (Herald.slnx) above " + AppContext.BaseDirectory);
    }
}
